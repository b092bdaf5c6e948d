"""In-memory models of Alibaba Cloud services, answering the real SDK clients' calls."""
