// The dashboard's files (web/ and the charting library from Debian's libjs-dygraphs), compiled
// into the binary by the build (web/CMakeLists.txt generates the definition): carpool never reads
// them from disk and never fetches anything from the internet.
#pragma once

#include <span>
#include <string_view>

namespace carpool::server {

struct WebAsset {
  std::string_view path;          // the URL path: "/", "/assets/dashboard.js"
  std::string_view content_type;  // "text/html; charset=utf-8"
  std::string_view body;
};

// Every asset; static storage.
std::span<const WebAsset> web_assets();

}  // namespace carpool::server
