// The observability routes: Prometheus text, the JSON series and status APIs, and the dashboard.
//
//   GET /metrics          Prometheus text format 0.0.4 (Telemetry::render_prometheus)
//   GET /api/v1/series    ?names=a,b:p99&from=&to=&step= -> Telemetry::series_json; 400 with an
//                         OpenAI error object on bad input
//   GET /api/v1/status    model, device, peaks and their sources, engine limits, the last 10 s
//                         figures and the advisor's line (telemetry/advisor.h)
//   GET /, /assets/...    the dashboard, built into the binary (server/web_assets.h)
//
// Thread-safety: the handlers run on any I/O thread; StatusInfo is set once the model is loaded
// and read under a mutex.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "server/router.h"
#include "server/server_state.h"
#include "telemetry/advisor.h"
#include "telemetry/telemetry.h"
#include "util/status.h"

namespace carpool::server {

// What /api/v1/status reports beside the live figures; known once the model is loaded.
struct StatusInfo {
  std::string model;         // the served name
  std::string architecture;  // the model config's name
  std::string device;        // the backend's device name: "CPU (2 threads)", "NVIDIA H200"
  telemetry::AdvisorLimits limits;
};

class MetricsRoutes {
 public:
  // `telemetry` and `state` are not owned and must outlive the routes (and the server).
  MetricsRoutes(telemetry::Telemetry* telemetry, const ServerState* state);
  // Adds the routes above to `router` (before the server starts). The object must outlive it.
  void add_to(Router& router);
  void set_info(StatusInfo info);

  // The JSON of /api/v1/status (also for tests).
  std::string status_json() const;

 private:
  telemetry::Telemetry* telemetry_;
  const ServerState* state_;
  mutable std::mutex mu_;
  std::optional<StatusInfo> info_;
};

// Query-string values: "a=1&b=x%2Cy" -> value of `key` percent-decoded ('+' is a space); empty
// when absent. Errors on a malformed escape.
Result<std::string> query_param(std::string_view query, std::string_view key);

}  // namespace carpool::server
