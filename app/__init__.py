"""ActiveSeg web app: server, persistence, jobs and routes around the ``ml/`` core."""
