"""The relatives' self-service HTTP API (FastAPI): unpacks HTTP, asks ivr/ rules and the store Protocols."""
