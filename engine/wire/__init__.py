"""The protobuf edge of the service, and the only part of engine/ that reads or builds
messages besides the client: ``requests`` (messages in, validated, to domain values),
``replies`` (domain values to messages out), ``enums`` (enum values both ways) and
``malformed`` (bytes that are not a message answer INVALID_ARGUMENT). The service
(engine.service) sees domain values only."""
