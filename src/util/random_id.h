// Random identifiers for API objects (request ids, tool call ids): 24 hex digits (96 bits) from a
// per-thread generator seeded by std::random_device. Unique in practice, not secret.
#pragma once

#include <string>

namespace carpool {

std::string random_hex_id();

}  // namespace carpool
