//! DescribeTopicPartitions (API 75).
