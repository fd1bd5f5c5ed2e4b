"""The interfaces' HTTP side: the server application plus the pipeline's REST routes."""
