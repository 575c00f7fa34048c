// System-library shim: exposes the protobuf-c runtime (Debian libprotobuf-c-dev) to Swift.
#include <protobuf-c/protobuf-c.h>
