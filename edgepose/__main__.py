"""`python -m edgepose` and the `edgepose` console script; the command line lives in edgepose/cli/."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
