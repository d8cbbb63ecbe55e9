"""Pure domain rules: no I/O, no faust, Kafka, Redis or HTTP imports."""
