#include "cli/load.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>

#include "backend/cpu/cpu_backend.h"
#include "cli/model_store.h"
#include "util/mapped_file.h"
#ifdef CARPOOL_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace carpool::cli {

Result<DType> parse_dtype(const std::string& name) {
  for (uint32_t id : {0u, 1u, 2u, 3u, 8u, 12u, 13u, 14u, 30u}) {
    auto info = dtype_info(id);
    if (info && info->name == name) return static_cast<DType>(id);
  }
  return Status::error("unknown weight type '" + name +
                       "' (f32, f16, bf16, q8_0, q4_0, q4_1, q4_k, q5_k, q6_k)");
}

Status check_kv_cache_dtype(const std::string& name) {
  if (name == "auto" || name == "f16" || name == "f32" || name == "int8" || name == "bf16") {
    return Status::ok();
  }
  return Status::error("--kv-cache-dtype must be auto, f16, f32, int8 (CPU) or bf16 (CUDA), got '" +
                       name + "'");
}

Status check_threads(int64_t n) {
  if (n < 0 || n > kMaxThreads) {
    return Status::error("--threads must be in [0, " + std::to_string(kMaxThreads) +
                         "] (0: every core), got " + std::to_string(n));
  }
  return Status::ok();
}

Status check_device(const std::string& device) {
  if (device != "auto" && device != "cpu" && device != "cuda") {
    return Status::error("--device must be auto, cpu or cuda, got '" + device + "'");
  }
  return Status::ok();
}

Result<std::unique_ptr<Backend>> make_backend(const std::string& device, int threads,
                                              bool cpu_exact, const std::string& kv_cache_dtype) {
  CARPOOL_RETURN_IF_ERROR(check_device(device));
  const std::string& kvd = kv_cache_dtype;
  CARPOOL_RETURN_IF_ERROR(check_kv_cache_dtype(kvd));
#ifdef CARPOOL_HAVE_CUDA
  if (device != "cpu") {
    auto cuda = make_cuda_backend(CudaBackendOptions{});
    if (cuda) {
      if (kvd == "f16" || kvd == "f32" || kvd == "int8") {
        return Status::error("--kv-cache-dtype " + kvd +
                             ": the CUDA backend keeps its KV cache in bf16 (use auto or bf16, or "
                             "--device cpu for an f16, f32 or int8 cache)");
      }
      return std::move(cuda).value();
    }
    if (device == "cuda") return Status::error("CUDA backend unavailable: " + cuda.error());
    if (kvd == "bf16") {
      return Status::error("--kv-cache-dtype bf16 needs the CUDA backend (" + cuda.error() + ")");
    }
    std::fprintf(stderr, "carpool: no usable GPU (%s); using the CPU\n", cuda.error().c_str());
  }
#else
  if (device == "cuda") return Status::error("this carpool was built without the CUDA backend");
#endif
  if (kvd == "bf16") {
    return Status::error(
        "--kv-cache-dtype bf16: the CPU backend keeps its KV cache in f16, f32 or int8");
  }
  CpuBackendOptions o;
  o.n_threads = threads;
  o.quantize_activations = !cpu_exact;
  if (kvd == "f32") o.kv_dtype = DType::kF32;
  if (kvd == "f16") o.kv_dtype = DType::kF16;  // auto: f16, or f32 with cpu_exact
  if (kvd == "int8") o.kv_dtype = DType::kI8;
  CARPOOL_RETURN_IF_ERROR(check_threads(threads));
  try {
    return make_cpu_backend(o);
  } catch (const std::system_error& e) {  // the thread pool's threads could not all start
    return Status::error("could not start " + std::to_string(threads) +
                         " CPU threads: " + e.what());
  }
}

Result<ModelConfig> synthetic_config(const std::string& spec) {
  const std::string prefix = "synthetic:";
  if (spec.rfind(prefix, 0) != 0) return Status::error("not a synthetic model: " + spec);
  const std::string what = spec.substr(prefix.size());
  if (what.size() > 5 && what.substr(what.size() - 5) == ".json") {
    auto text = read_file(what, 1 << 20);
    if (!text) return text.status();
    return model_config_from_hf_json(text.value());
  }
  return named_config(what);
}

Result<LoadedModel> load_model(const LoadOptions& opt) {
  auto t0 = std::chrono::steady_clock::now();
  LoadedModel lm;
  auto be = make_backend(opt.device, opt.threads, opt.cpu_exact, opt.kv_cache_dtype);
  if (!be) return be.status();
  lm.backend = std::move(be).value();
  const std::string prefix = "synthetic:";
  if (opt.model.rfind(prefix, 0) == 0) {
    Result<ModelConfig> cfg = synthetic_config(opt.model);
    if (!cfg) return cfg.status();
    std::string dt = opt.synthetic_dtype;
    if (dt.empty()) {
      // Quantized types need rows that are whole blocks of 32; small test configs fall back.
      const ModelConfig& c = cfg.value();
      bool aligned = c.hidden_size % 32 == 0 && c.intermediate_size % 32 == 0 &&
                     (c.n_heads * c.head_dim) % 32 == 0;
      dt = lm.backend->name() != "cpu" ? "bf16" : aligned ? "q4_1" : "f32";
    }
    auto dtype = parse_dtype(dt);
    if (!dtype) return dtype.status();
    auto m = LlamaModel::synthetic(*lm.backend, cfg.value(), dtype.value(), 1234, opt.limits);
    if (!m) return m.status();
    lm.model = std::move(m).value();
    lm.synthetic = true;
  } else {
    auto path = resolve_model_path(opt.model);
    if (!path) return path.status();
    auto opened = open_model(path.value());
    if (!opened) return opened.status();
    lm.opened = std::move(opened).value();
    auto m = LlamaModel::load(*lm.backend, lm.opened.source, opt.limits);
    if (!m) return Status::error(path.value() + ": " + m.error());
    lm.model = std::move(m).value();
  }
  if (!opt.tokenizer.empty()) {
    auto tok = open_tokenizer(opt.tokenizer);
    if (!tok) return Status::error("--tokenizer: " + tok.error());
    if (tok.value()->vocab_size() > lm.model->config().vocab_size) {
      return Status::error("--tokenizer: its " + std::to_string(tok.value()->vocab_size()) +
                           " tokens do not fit the model's vocabulary of " +
                           std::to_string(lm.model->config().vocab_size));
    }
    lm.opened.tokenizer = std::move(tok).value();
  }
  lm.load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return lm;
}

Result<chat::ChatTemplate> load_chat_template(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return Status::error("--chat-template: no such file: " + path);
  }
  auto source = read_file(path, chat::kMaxTemplateBytes);
  if (!source) return Status::error("--chat-template: " + source.error());
  auto tmpl = chat::ChatTemplate::parse(source.value());
  if (!tmpl) return Status::error("--chat-template: " + path + " does not parse: " + tmpl.error());
  return tmpl;
}

}  // namespace carpool::cli
