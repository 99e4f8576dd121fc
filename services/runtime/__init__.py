"""What every processor shares: settings, connections, migrations, dead letters, outbox, workers.

No business rules live here.
"""
