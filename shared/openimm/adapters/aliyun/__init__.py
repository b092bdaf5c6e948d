"""Adapters on Alibaba Cloud (extra `aliyun`): Tablestore tables and OSS buckets."""
