// carpool serve: the OpenAI-compatible HTTP server on one model.
//
// The listener starts first (/health answers, /ready is 503 while loading), then the model loads,
// the engine starts and runs one warm-up request, and /ready turns 200. SIGTERM or SIGINT drains:
// readiness off, new and queued requests 503, running ones finish within --shutdown-timeout,
// exit 0; a second signal ends the drain at once.
//
// Telemetry (unless --no-telemetry): the engine reports every step and request to it; /metrics,
// /api/v1/series, /api/v1/status and the dashboard at / read it. Peaks: on the CPU a calibration
// cached per machine (peaks.json in the cache directory), on a GPU the catalog (--gpu-catalog),
// whose NVML/GPM counters a probe reads once a second.
#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/load.h"
#include "cli/model_store.h"
#include "engine/engine.h"
#include "engine/engine_options.h"
#include "model/open_model.h"
#include "server/metrics_handlers.h"
#include "server/server.h"
#include "telemetry/telemetry.h"

namespace carpool::cli {
namespace {

// "512MiB", "1G", "1.5GiB", "1048576" -> bytes.
Result<int64_t> parse_bytes(const std::string& s) {
  size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(s, &pos);
  } catch (...) {
    return Status::error("--kv-cache-memory: expected a size like 512MiB or 2G, got '" + s + "'");
  }
  std::string unit = s.substr(pos);
  double mult = 1;
  if (unit.empty() || unit == "B") {
    mult = 1;
  } else if (unit == "K" || unit == "KiB" || unit == "KB") {
    mult = 1024.0;
  } else if (unit == "M" || unit == "MiB" || unit == "MB") {
    mult = 1024.0 * 1024;
  } else if (unit == "G" || unit == "GiB" || unit == "GB") {
    mult = 1024.0 * 1024 * 1024;
  } else {
    return Status::error("--kv-cache-memory: unknown unit '" + unit + "' (use K, M or G)");
  }
  const double bytes = v * mult;
  if (!(bytes > 0) || bytes > 1e15) return Status::error("--kv-cache-memory out of range");
  return static_cast<int64_t>(bytes);
}

// --allowed-origins: "*", "none" (no CORS), or origins ("scheme://host[:port]", compared with
// the browser's Origin header, which is lower case and has no path) separated by commas.
Result<std::vector<std::string>> parse_allowed_origins(const std::string& s) {
  std::vector<std::string> out;
  if (s == "none") return out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    std::string o = s.substr(start, end - start);
    while (!o.empty() && o.front() == ' ') o.erase(o.begin());
    while (!o.empty() && o.back() == ' ') o.pop_back();
    const std::string given = o;
    while (!o.empty() && o.back() == '/') o.pop_back();  // browsers send no trailing slash
    for (char& ch : o) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    // Browsers leave a scheme's default port out of the Origin they send.
    for (const char* dflt : {"http://", "https://"}) {
      const std::string port = std::string(dflt) == "http://" ? ":80" : ":443";
      if (o.rfind(dflt, 0) == 0 && o.size() > port.size() &&
          o.compare(o.size() - port.size(), port.size(), port) == 0) {
        o.resize(o.size() - port.size());
      }
    }
    const size_t scheme = o.find("://");
    if (o != "*" && (scheme == std::string::npos || scheme == 0 || scheme + 3 >= o.size() ||
                     o.find_first_of(" \t\"/?#", scheme + 3) != std::string::npos ||
                     o.find_first_of(" \t\"") != std::string::npos)) {
      return Status::error("--allowed-origins: '" + given +
                           "' is not an origin (scheme://host[:port]), * or none");
    }
    out.push_back(std::move(o));
    start = end + 1;
  }
  return out;
}

// The name clients use in "model": the --model argument, or a path's file name without .gguf.
std::string default_served_name(const std::string& model) {
  if (model.empty()) return "smollm2";
  std::string name = model;
  while (name.size() > 1 && name.back() == '/') name.pop_back();
  size_t slash = name.find_last_of('/');
  if (slash != std::string::npos) name = name.substr(slash + 1);
  if (name.size() > 5 && name.substr(name.size() - 5) == ".gguf") name.resize(name.size() - 5);
  return name;
}

// Many open streams need many descriptors: raise the soft limit to the hard one.
void raise_open_file_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

// data/gpus.json of the source tree the binary was built in (build/carpool -> ../data), when the
// user gave no --gpu-catalog.
std::string default_gpu_catalog() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "";
  for (const char* rel : {"../data/gpus.json", "../../data/gpus.json"}) {
    const auto p = exe.parent_path() / rel;
    if (std::filesystem::exists(p, ec)) return p.lexically_normal().string();
  }
  return "";
}

// Peaks for the loaded backend, and the GPU probe when it is a GPU. Failures only warn: the
// figures that need them show as unavailable.
void setup_peaks(telemetry::Telemetry& tel, Backend& backend, bool gpu,
                 const std::string& catalog_path) {
  const std::string name = backend.device_name();
  if (!gpu) {
    telemetry::CalibrationOptions co;
    const std::string dir = telemetry::cache_dir();
    if (dir.empty()) {
      std::fprintf(stderr, "carpool: warning: no cache directory; CPU peaks unknown\n");
      return;
    }
    const std::string path = dir + "/peaks.json";
    auto calibration = telemetry::cpu_peaks_cached(backend, name, path, co);
    if (!calibration) {
      std::fprintf(stderr, "carpool: warning: CPU calibration failed: %s\n",
                   calibration.error().c_str());
      return;
    }
    std::fprintf(stderr, "carpool: %s\n",
                 telemetry::describe_cpu_calibration(*calibration, path).c_str());
    tel.set_peaks(calibration->peaks);
    return;
  }
  auto nvml = telemetry::load_nvml();
  if (nvml) {
    auto probe = telemetry::GpuProbe::open(std::move(nvml).value(), 0);
    if (probe) {
      tel.set_gpu_probe(std::move(probe).value());
    } else {
      std::fprintf(stderr, "carpool: warning: no GPU probe: %s\n", probe.error().c_str());
    }
  } else {
    std::fprintf(stderr, "carpool: warning: NVML unavailable: %s\n", nvml.error().c_str());
  }
  if (catalog_path.empty()) {
    std::fprintf(stderr, "carpool: warning: no GPU catalog (--gpu-catalog); GPU peaks unknown\n");
    return;
  }
  auto catalog = telemetry::load_gpu_catalog(catalog_path);
  if (!catalog) {
    std::fprintf(stderr, "carpool: warning: %s\n", catalog.error().c_str());
    return;
  }
  auto entry = telemetry::match_gpu(*catalog, name);
  if (!entry) {
    std::fprintf(stderr, "carpool: warning: '%s' is not in the GPU catalog %s; peaks unknown\n",
                 name.c_str(), catalog_path.c_str());
    return;
  }
  tel.set_peaks(telemetry::peaks_from_catalog(*entry, name));
}

// SIGTERM and SIGINT wait (pending) from the start until the server handles them, so that one
// in the first milliseconds drains and exits 0 as a later one does, instead of ending the process
// with the default action. Threads started meanwhile keep them blocked (the signals then go to
// the main thread); programs started later get a clean mask (model_store's run_program).
class StopSignalsHeld {
 public:
  StopSignalsHeld() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGTERM);
    sigaddset(&set_, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
  }
  ~StopSignalsHeld() { release(); }
  void release() {
    if (held_) pthread_sigmask(SIG_UNBLOCK, &set_, nullptr);
    held_ = false;
  }

 private:
  sigset_t set_;
  bool held_ = true;
};

}  // namespace

int cmd_serve(int argc, char** argv) {
  StopSignalsHeld stop_signals;
  Args args(
      "serve", "Serves a model over an OpenAI-compatible HTTP API.",
      {
          {"model", "m", "PATH_OR_NAME", "GGUF file, Hugging Face folder, or known name",
           "smollm2"},
          {"host", "", "ADDR", "address to listen on", "127.0.0.1"},
          {"port", "p", "PORT", "port to listen on (0: any free port)", "8000"},
          {"api-key", "", "KEY",
           "require 'Authorization: Bearer KEY' on every route but /health (and the dashboard "
           "page, which holds no data)",
           ""},
          {"served-model-name", "", "NAME", "the model name clients use",
           "the --model file or folder name, without directory and .gguf"},
          {"max-num-seqs", "", "N", "sequences per engine step", "64"},
          {"max-num-batched-tokens", "", "N", "tokens per engine step", "512"},
          {"kv-cache-memory", "", "SIZE", "KV cache size (e.g. 512MiB, 2G)",
           "512MiB on CPU, 90% of free GPU memory"},
          {"max-model-len", "", "N", "context length per request (0: the model's)", "0"},
          {"max-queued-requests", "", "N", "waiting requests before answering 429", "1024"},
          {"shutdown-timeout", "", "SECONDS",
           "time running requests get to finish on SIGTERM (a second signal ends it at once)",
           "30"},
          {"io-threads", "", "N", "HTTP I/O threads", "1"},
          {"max-body-bytes", "", "N", "largest request body (413 beyond)", "8388608"},
          {"allowed-origins", "", "LIST",
           "CORS: comma-separated origins whose browser pages may call the API "
           "(e.g. http://localhost:3000; pages of others get a 403), * for any, none for none",
           "*"},
          {"device", "", "DEVICE", "auto, cpu or cuda", "auto"},
          {"cpu-exact", "", "",
           "CPU: dequantize weights and compute in f32 (the reference arithmetic; slower)", ""},
          {"kv-cache-dtype", "", "TYPE",
           "KV cache element type: auto (CPU f16, f32 with --cpu-exact; CUDA bf16), f16, f32, "
           "int8 (CPU: int8 with a scale per token and KV head, half of f16's memory), bf16",
           "auto"},
          {"tokenizer", "", "PATH",
           "tokenizer from this GGUF file or folder (tokenizer.json) instead of the model's; "
           "lets synthetic models serve",
           ""},
          {"chat-template", "", "PATH",
           "Jinja chat template file to use instead of the model's (for a model without one, or "
           "to change it)",
           ""},
          {"threads", "t", "N", "CPU threads, up to 1024 (0: every core)", "0"},
          {"no-telemetry", "", "", "no metrics, series or dashboard (for overhead measurements)",
           ""},
          {"gpu-catalog", "", "PATH", "GPU catalog JSON (datasheet peaks)",
           "data/gpus.json of the source tree"},
      });
  if (Status st = args.parse(argc, argv); !st) {
    std::fprintf(stderr, "carpool serve: %s\n", st.message().c_str());
    return 2;
  }
  if (args.help_requested()) {
    std::fputs(args.help().c_str(), stdout);
    return 0;
  }
  auto fail = [](const std::string& msg) {
    std::fprintf(stderr, "carpool serve: %s\n", msg.c_str());
    return 1;
  };
  auto port = args.get_int("port", 8000), seqs = args.get_int("max-num-seqs", 64),
       batched = args.get_int("max-num-batched-tokens", 512),
       model_len = args.get_int("max-model-len", 0),
       queued = args.get_int("max-queued-requests", 1024), io = args.get_int("io-threads", 1),
       body = args.get_int("max-body-bytes", 8 << 20), threads = args.get_int("threads", 0);
  auto shutdown_s = args.get_float("shutdown-timeout", 30);
  for (const Status& st :
       {port.status(), seqs.status(), batched.status(), model_len.status(), queued.status(),
        io.status(), body.status(), threads.status(), shutdown_s.status()}) {
    if (!st) return fail(st.message());
  }
  if (port.value() < 0 || port.value() > 65535) return fail("--port must be in [0, 65535]");
  if (queued.value() < 1 || queued.value() > 1000000) {
    return fail("--max-queued-requests must be in [1, 1000000]");
  }
  if (io.value() < 1 || io.value() > 64) return fail("--io-threads must be in [1, 64]");
  if (body.value() < 1024 || body.value() > (int64_t{1} << 30)) {
    return fail("--max-body-bytes must be in [1024, 1073741824]");
  }
  if (!(shutdown_s.value() >= 0) || shutdown_s.value() > 86400) {
    return fail("--shutdown-timeout must be in [0, 86400]");
  }
  auto origins = parse_allowed_origins(args.get("allowed-origins", "*"));
  if (!origins) return fail(origins.error());
  // Spelling now; whether the device supports the type is known once the backend starts.
  if (Status st = check_kv_cache_dtype(args.get("kv-cache-dtype", "auto")); !st) {
    return fail(st.message());
  }
  // What can be checked without the model is checked before listening (the rest after, while
  // /health already answers): a wrong option ends the process before it says "listening".
  if (Status st = check_threads(threads.value()); !st) return fail(st.message());
  if (seqs.value() < 1) return fail("--max-num-seqs must be at least 1");
  if (batched.value() < seqs.value()) {
    return fail("--max-num-batched-tokens must be at least --max-num-seqs (" +
                std::to_string(seqs.value()) + ")");
  }
  if (model_len.value() < 0) return fail("--max-model-len must be >= 0 (0: the model's)");
  if (Status st = check_device(args.get("device", "auto")); !st) return fail(st.message());
  if (args.has("gpu-catalog") && !std::filesystem::is_regular_file(args.get("gpu-catalog"))) {
    return fail("--gpu-catalog: no such file: " + args.get("gpu-catalog"));
  }
  if (Status st = check_model_arg(args.get("model")); !st) return fail(st.message());
  std::optional<chat::ChatTemplate> chat_template_override;
  if (args.has("chat-template")) {
    auto tmpl = load_chat_template(args.get("chat-template"));
    if (!tmpl) return fail(tmpl.error());
    chat_template_override = std::move(tmpl).value();
  }

  EngineOptions eo;
  eo.max_num_seqs = static_cast<int>(std::clamp<int64_t>(seqs.value(), -1, 1 << 20));
  eo.max_num_batched_tokens = static_cast<int>(std::clamp<int64_t>(batched.value(), -1, 1 << 24));
  eo.max_model_len = static_cast<int>(std::clamp<int64_t>(model_len.value(), -1, 1 << 24));
  eo.max_queued_requests = static_cast<int>(queued.value());
  if (args.has("kv-cache-memory")) {
    auto kv = parse_bytes(args.get("kv-cache-memory"));
    if (!kv) return fail(kv.error());
    eo.kv_cache_bytes = kv.value();
  }

  server::ServerOptions so;
  so.http.host = args.get("host", "127.0.0.1");
  so.http.port = static_cast<int>(port.value());
  so.http.io_threads = static_cast<int>(io.value());
  so.http.max_body_bytes = static_cast<size_t>(body.value());
  so.http.allowed_origins = std::move(origins.value());
  so.api_key = args.get("api-key");
  so.shutdown_timeout_s = shutdown_s.value();
  const std::string model_arg = args.get("model");
  const std::string served_name = args.get("served-model-name", default_served_name(model_arg));

  // The device label follows the backend, known after loading; "cpu" until then.
  std::unique_ptr<telemetry::Telemetry> tel;
  std::unique_ptr<server::MetricsRoutes> metrics;
  if (!args.flag("no-telemetry")) {
    tel = std::make_unique<telemetry::Telemetry>(telemetry::TelemetryOptions{});
    tel->set_replicas(0, 1);
    tel->set_desired_replicas(1);
    so.telemetry = tel.get();
  }

  // The model's config, which the engine options are checked against: read before listening
  // where that needs no download (a synthetic model, a path, a known model already cached), so
  // that a wrong --max-model-len ends the process before it says "listening"; otherwise after,
  // while /health answers during the download.
  ModelConfig config;
  std::string model_path;
  auto read_config = [&]() -> Status {
    if (model_arg.rfind("synthetic:", 0) == 0) {
      auto c = synthetic_config(model_arg);
      if (!c) return c.status();
      config = c.value();
      model_path = model_arg;
    } else {
      auto path = resolve_model_path(model_arg);
      if (!path) return path.status();
      auto opened = open_model(path.value());
      if (!opened) return opened.status();
      config = opened->source.config;
      model_path = path.value();
    }
    return resolve_engine_options(eo, config).status();
  };
  const bool early = model_arg.rfind("synthetic:", 0) == 0 || !local_model_path(model_arg).empty();
  if (early) {
    if (Status st = read_config(); !st) return fail(st.message());
  }

  raise_open_file_limit();
  server::Server server(so);
  if (tel) {
    metrics = std::make_unique<server::MetricsRoutes>(tel.get(), &server.state());
    metrics->add_to(server.router());
    tel->start_probes();
  }
  if (Status st = server.start(); !st) return fail(st.message());
  stop_signals.release();  // the server's handler takes them now (one already sent included)
  std::fprintf(stderr, "carpool: listening on http://%s:%d (loading the model)\n",
               so.http.host.c_str(), server.port());

  // The model's limits follow the engine options, which need the model's config.
  if (!early) {
    if (Status st = read_config(); !st) return fail(st.message());
  }
  LoadOptions lo;
  lo.model = model_path;
  lo.device = args.get("device", "auto");
  lo.kv_cache_dtype = args.get("kv-cache-dtype", "auto");
  lo.tokenizer = args.get("tokenizer");
  lo.cpu_exact = args.flag("cpu-exact");
  lo.threads = static_cast<int>(threads.value());
  lo.limits = engine_model_limits(eo, config);
  auto lm = load_model(lo);
  if (!lm) return fail(lm.error());
  if (!lm->opened.tokenizer) return fail("the model has no tokenizer; serve needs one");
  if (tel) {
    const bool gpu = lm->backend->name() != "cpu";
    tel->set_device(gpu ? "cuda:0" : "cpu");
    setup_peaks(*tel, *lm->backend, gpu, args.get("gpu-catalog", default_gpu_catalog()));
    eo.telemetry = tel.get();
  }
  // One I/O wake-up per engine step for all the step's token events.
  eo.delivery_hook = [&server](bool begin) { server.hold_posts(begin); };
  // A/B switch: CARPOOL_OVERLAP_DELIVERY=0 or 1 overrides the default (on for a GPU backend).
  if (const char* e = std::getenv("CARPOOL_OVERLAP_DELIVERY"); e != nullptr && *e != '\0')
    eo.overlap_delivery = std::strcmp(e, "0") != 0;
  auto engine = Engine::create(*lm->model, eo);
  if (!engine) return fail(engine.error());
  const Tokenizer& tok = *lm->opened.tokenizer;
  if (Status st = server::warm_up(*engine.value(), tok); !st) return fail(st.message());

  auto svc = std::make_unique<server::ModelService>();
  svc->engine = engine.value().get();
  svc->tokenizer = &tok;
  svc->model_name = served_name;
  svc->max_model_len = engine.value()->max_model_len();
  svc->max_queued_requests = eo.max_queued_requests;
  svc->json_vocab = json_token_bytes(tok);
  svc->created = std::chrono::duration_cast<std::chrono::seconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count();
  if (chat_template_override) {
    svc->chat_template = std::move(chat_template_override);
  } else if (tok.chat_template().empty()) {
    svc->chat_template_error =
        "the model file has no chat template; give one with carpool serve --chat-template";
  } else {
    auto tmpl = chat::ChatTemplate::parse(tok.chat_template());
    if (tmpl) {
      svc->chat_template = std::move(tmpl).value();
    } else {
      svc->chat_template_error = "its chat template does not parse: " + tmpl.error();
      std::fprintf(stderr, "carpool: warning: %s\n", svc->chat_template_error.c_str());
    }
  }
  if (svc->chat_template) {
    svc->tool_format = server::detect_tool_format(svc->chat_template->source());
  }
  if (metrics) {
    server::StatusInfo info;
    info.model = served_name;
    info.architecture = lm->model->config().name;
    info.device = lm->backend->device_name();
    info.limits.max_num_seqs = engine.value()->options().max_num_seqs;
    info.limits.max_num_batched_tokens = engine.value()->options().max_num_batched_tokens;
    metrics->set_info(std::move(info));
  }
  server.publish_model(std::move(svc));
  if (tel) tel->set_replicas(1, 0);
  std::fprintf(stderr, "carpool: serving '%s' (%s on %s, loaded in %.2f s) at http://%s:%d\n",
               served_name.c_str(), lm->model->config().name.c_str(),
               lm->backend->device_name().c_str(), lm->load_s, so.http.host.c_str(), server.port());

  server.wait_for_shutdown_request();
  std::fprintf(stderr, "carpool: shutting down: finishing in-flight requests (at most %.0f s)\n",
               so.shutdown_timeout_s);
  server.drain_and_stop();
  if (tel) tel->stop_probes();  // the probe thread reads the engine's state
  engine.value().reset();       // before the server: its request sinks refer to connections
  std::fprintf(stderr, "carpool: stopped\n");
  return 0;
}

}  // namespace carpool::cli
