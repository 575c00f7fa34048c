// System-library shim: exposes libnghttp2 (Debian libnghttp2-dev) to Swift.
#include <nghttp2/nghttp2.h>
