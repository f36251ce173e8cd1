"""Generated protobuf modules (never edit by hand; run `make proto`)."""
