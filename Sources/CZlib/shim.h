// System-library shim: exposes zlib (Debian zlib1g-dev) for gRPC's gzip message encoding.
#include <zlib.h>
