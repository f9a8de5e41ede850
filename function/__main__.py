"""`python -m function`: the container's command. Reads the environment, then serves with gunicorn."""

from .http.server import main

main()
