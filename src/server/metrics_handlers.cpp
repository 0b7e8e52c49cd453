#include "server/metrics_handlers.h"

#include <nlohmann/json.hpp>

#include "server/api_error.h"
#include "server/handlers.h"
#include "server/json_io.h"
#include "server/web_assets.h"

namespace carpool::server {
namespace {

using Json = nlohmann::ordered_json;

Json opt(const std::optional<double>& v) {
  return v ? Json(*v) : Json(nullptr);
}

Result<std::string> percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%') {
      if (i + 2 >= s.size()) {
        return Status::error("malformed percent escape in the query string");
      }
      const int hi = hex_digit_value(s[i + 1]), lo = hex_digit_value(s[i + 2]);
      if (hi < 0 || lo < 0) return Status::error("malformed percent escape in the query string");
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

void respond_text(Exchange& ex, std::string body, std::string content_type) {
  HttpResponse r;
  r.content_type = std::move(content_type);
  r.body = std::move(body);
  r.headers.emplace_back("Cache-Control", "no-cache");
  ex.respond(std::move(r));
}

}  // namespace

Result<std::string> query_param(std::string_view query, std::string_view key) {
  size_t pos = 0;
  while (pos <= query.size()) {
    size_t amp = query.find('&', pos);
    if (amp == std::string_view::npos) amp = query.size();
    std::string_view part = query.substr(pos, amp - pos);
    const size_t eq = part.find('=');
    auto name = percent_decode(part.substr(0, eq));
    if (!name) return name;
    if (*name == key) {
      return eq == std::string_view::npos ? std::string() : percent_decode(part.substr(eq + 1));
    }
    pos = amp + 1;
  }
  return std::string();
}

MetricsRoutes::MetricsRoutes(telemetry::Telemetry* telemetry, const ServerState* state)
    : telemetry_(telemetry), state_(state) {}

void MetricsRoutes::set_info(StatusInfo info) {
  std::lock_guard<std::mutex> lock(mu_);
  info_ = std::move(info);
}

void MetricsRoutes::add_to(Router& router) {
  router.add("GET", "/metrics", [this](std::shared_ptr<Exchange> ex) {
    respond_text(*ex, telemetry_->render_prometheus(), "text/plain; version=0.0.4; charset=utf-8");
  });
  router.add("GET", "/api/v1/series", [this](std::shared_ptr<Exchange> ex) {
    const std::string& q = ex->request().query;
    auto names = query_param(q, "names");
    auto from = query_param(q, "from");
    auto to = query_param(q, "to");
    auto step = query_param(q, "step");
    for (const auto* r : {&names, &from, &to, &step}) {
      if (!*r) return ex->respond(error_response(bad_request(r->error())));
    }
    if (names->empty()) {
      return ex->respond(error_response(bad_request("'names' is required", "names")));
    }
    const int64_t now_s =
        telemetry::floor_seconds(telemetry_->clock().now_ns()) + 1;  // include this second
    auto query = telemetry::parse_series_query(*names, *from, *to, *step, now_s);
    if (!query) return ex->respond(error_response(bad_request(query.error())));
    auto body = telemetry_->series_json(*query);
    if (!body) return ex->respond(error_response(bad_request(body.error(), "names")));
    respond_text(*ex, std::move(body).value(), "application/json");
  });
  router.add("GET", "/api/v1/status", [this](std::shared_ptr<Exchange> ex) {
    respond_text(*ex, status_json(), "application/json");
  });
  for (const WebAsset& a : web_assets()) {
    router.add("GET", std::string(a.path), [&a](std::shared_ptr<Exchange> ex) {
      respond_text(*ex, std::string(a.body), std::string(a.content_type));
    });
  }
}

std::string MetricsRoutes::status_json() const {
  std::optional<StatusInfo> info;
  {
    std::lock_guard<std::mutex> lock(mu_);
    info = info_;
  }
  const telemetry::WindowFigures f = telemetry_->window_figures(10);
  const telemetry::Peaks& p = f.peaks;
  Json out;
  out["model"] = info ? Json(info->model) : Json(nullptr);
  out["architecture"] = info ? Json(info->architecture) : Json(nullptr);
  out["device"] = info ? Json(info->device) : Json(nullptr);
  out["device_label"] = telemetry_->device();
  out["ready"] = state_->ready();
  out["now"] = telemetry::floor_seconds(telemetry_->clock().now_ns());
  Json peaks;
  peaks["device"] = p.device;
  peaks["flops_per_second"] = p.flops_per_s > 0 ? Json(p.flops_per_s) : Json(nullptr);
  peaks["flops_source"] = p.flops_source;
  peaks["bandwidth_bytes_per_second"] =
      p.bandwidth_bytes_per_s > 0 ? Json(p.bandwidth_bytes_per_s) : Json(nullptr);
  peaks["bandwidth_source"] = p.bandwidth_source;
  peaks["ridge_point"] = opt(p.ridge_flops_per_byte());
  out["peaks"] = peaks;
  Json limits;
  limits["max_num_seqs"] = info ? Json(info->limits.max_num_seqs) : Json(nullptr);
  limits["max_num_batched_tokens"] =
      info ? Json(info->limits.max_num_batched_tokens) : Json(nullptr);
  out["limits"] = limits;
  Json w;
  w["seconds"] = f.window_s;
  w["steps"] = f.steps;
  w["bound"] = f.all.bound ? Json(telemetry::bound_name(*f.all.bound)) : Json(nullptr);
  w["busy"] = opt(f.all.busy);
  w["mfu"] = opt(f.all.mfu);
  w["mbu"] = opt(f.all.mbu);
  w["arithmetic_intensity"] = opt(f.all.arithmetic_intensity);
  w["batch_size"] = opt(f.batch_size);
  w["batch_tokens"] = opt(f.batch_tokens);
  w["prompt_tokens_per_second"] = f.prompt_tokens_per_s;
  w["generation_tokens_per_second"] = f.generation_tokens_per_s;
  w["preemptions"] = opt(f.preemptions);
  w["requests_in_flight"] = f.requests_in_flight;
  if (f.engine) {
    w["running"] = f.engine->running;
    w["waiting"] = f.engine->waiting;
    w["kv_usage"] = f.engine->kv_blocks_total > 0
                        ? Json(static_cast<double>(f.engine->kv_blocks_used) /
                               static_cast<double>(f.engine->kv_blocks_total))
                        : Json(nullptr);
  } else {
    w["running"] = w["waiting"] = w["kv_usage"] = nullptr;
  }
  out["window"] = w;
  if (info) {
    const telemetry::Advice a = telemetry::advise(f, info->limits);
    Json advice;
    advice["state"] = a.state;
    advice["bound"] = a.bound.empty() ? Json(nullptr) : Json(a.bound);
    advice["lever"] = a.lever.empty() ? Json(nullptr) : Json(a.lever);
    advice["text"] = a.text;
    out["advice"] = advice;
  } else {
    out["advice"] = nullptr;
  }
  return dump_json(out);
}

}  // namespace carpool::server
