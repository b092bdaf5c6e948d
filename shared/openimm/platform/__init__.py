"""Adapters between serverless platform events (FC 3.0, AWS Lambda) and the application."""
