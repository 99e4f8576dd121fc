"""`python -m services.triage`: one triage worker. Scale by starting more, up to the partition count."""

from services.runtime.infra import serve
from services.triage.app import create_app

if __name__ == "__main__":
    serve(create_app)
