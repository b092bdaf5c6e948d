"""Adapters on Alibaba Cloud (extra `aliyun`): Tablestore tables, OSS buckets, MNS topics."""
