"""`python -m services.sla`: one SLA worker. Run several: they share the partitions and the due clocks."""

from services.runtime.infra import serve
from services.sla.app import create_app

if __name__ == "__main__":
    serve(create_app)
