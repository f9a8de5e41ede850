"""`python -m function [serve]`: the container's command.

serve (the default)  read the environment (settings.py) and answer HTTP with gunicorn (http/server.py); every path
                     it answers and who answers it is the route table, http/routes.py.
batch                run the model over a bucket prefix or a folder, exactly once (batch/; docs/batch.md);
                     `batch status --output …` says how far a run is.
"""

import sys

USAGE = ("usage: python -m function [serve]\n"
         "       python -m function batch --input … --output … | batch status --output …")


def run(argv: list[str]) -> None:
    if argv in ([], ["serve"]):
        from .http.server import main

        main()
    elif argv[:1] == ["batch"]:
        from .batch.command import main as batch

        sys.exit(batch(argv[1:]))
    elif argv in (["-h"], ["--help"]):
        print(__doc__.strip())
    else:
        print(f"{USAGE}\nunknown command: {' '.join(argv)}", file=sys.stderr)
        sys.exit(2)


run(sys.argv[1:])
