"""Operations: local Kafka/Redis provisioning, simulator, benchmarks."""
