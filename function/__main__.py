"""`python -m function [serve]`: the container's command.

serve (the default)  read the environment (settings.py) and answer HTTP with gunicorn (http/server.py); every path
                     it answers and who answers it is the route table, http/routes.py.
"""

import sys

USAGE = "usage: python -m function [serve]"


def run(argv: list[str]) -> None:
    if argv in ([], ["serve"]):
        from .http.server import main

        main()
    elif argv in (["-h"], ["--help"]):
        print(__doc__.strip())
    else:
        print(f"{USAGE}\nunknown command: {' '.join(argv)}", file=sys.stderr)
        sys.exit(2)


run(sys.argv[1:])
