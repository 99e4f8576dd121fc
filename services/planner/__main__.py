"""`python -m services.planner`: one planner worker. Scale by starting more, up to the partition count."""

from services.planner.app import create_app
from services.runtime.infra import serve

if __name__ == "__main__":
    serve(create_app)
