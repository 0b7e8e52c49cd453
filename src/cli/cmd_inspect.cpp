// carpool inspect: describe a model file without running it.
#include <cstdio>
#include <map>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/model_store.h"
#include "formats/gguf.h"
#include "model/open_model.h"

namespace carpool::cli {
namespace {

std::string human_bytes(double b) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000 && u < 4) {
    b /= 1000;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f %s", b, units[u]);
  return buf;
}

void print_config(const ModelConfig& c) {
  std::printf("architecture      %s\n", c.architecture.c_str());
  if (!c.name.empty()) std::printf("name              %s\n", c.name.c_str());
  std::printf("layers            %lld\n", static_cast<long long>(c.n_layers));
  std::printf("hidden size       %lld\n", static_cast<long long>(c.hidden_size));
  std::printf("ffn size          %lld\n", static_cast<long long>(c.intermediate_size));
  std::printf("heads             %lld (kv heads %lld, head dim %lld)\n",
              static_cast<long long>(c.n_heads), static_cast<long long>(c.n_kv_heads),
              static_cast<long long>(c.head_dim));
  std::printf("vocabulary        %lld\n", static_cast<long long>(c.vocab_size));
  std::printf("context length    %lld\n", static_cast<long long>(c.max_position));
  std::printf("rope              theta %g, %s%s\n", c.rope_theta,
              c.rope_style == RopeStyle::kNeox ? "rotate-half" : "interleaved",
              c.rope_scaling.enabled ? ", llama3 scaling" : "");
  std::printf("qkv bias          %s\n", c.qkv_bias ? "yes" : "no");
  std::printf("tied embeddings   %s\n", c.tied_embeddings ? "yes" : "no");
  std::printf("parameters        %.3f B (%lld)\n", c.parameter_count() / 1e9,
              static_cast<long long>(c.parameter_count()));
  std::printf("KV cache / token  %s at 16 bits, %s at 32 bits (CPU), %s in int8 (CPU)\n",
              human_bytes(static_cast<double>(c.kv_bytes_per_token(2))).c_str(),
              human_bytes(static_cast<double>(c.kv_bytes_per_token(4))).c_str(),
              human_bytes(static_cast<double>(c.kv_bytes_per_token(DType::kI8))).c_str());
}

}  // namespace

int cmd_inspect(int argc, char** argv) {
  Args args("inspect",
            "Prints a model's architecture, tensor types, parameter count, weight memory and "
            "KV-cache bytes per token. MODEL is a GGUF file, a Hugging Face folder, a known name, "
            "or synthetic:NAME.",
            {}, "MODEL");
  if (Status st = args.parse(argc, argv); !st) {
    std::fprintf(stderr, "carpool inspect: %s\n", st.message().c_str());
    return 2;
  }
  if (args.help_requested()) {
    std::fputs(args.help().c_str(), stdout);
    return 0;
  }
  std::string name = args.positional().empty() ? "" : args.positional()[0];
  if (name.rfind("synthetic:", 0) == 0) {
    auto c = named_config(name.substr(10));
    if (!c) {
      std::fprintf(stderr, "carpool inspect: %s\n", c.error().c_str());
      return 1;
    }
    print_config(c.value());
    std::printf("weights (bf16)    %s\n", human_bytes(2.0 * c->parameter_count()).c_str());
    return 0;
  }
  auto path = resolve_model_path(name);
  if (!path) {
    std::fprintf(stderr, "carpool inspect: %s\n", path.error().c_str());
    return 1;
  }
  auto m = open_model(path.value());
  if (!m) {
    std::fprintf(stderr, "carpool inspect: %s\n", m.error().c_str());
    return 1;
  }
  std::printf("file              %s (%s)\n", path.value().c_str(), m->source.format.c_str());
  if (m->gguf) std::printf("gguf version      %u\n", m->gguf->version());
  print_config(m->source.config);
  std::map<std::string, std::pair<int, double>> by_type;
  double total = 0;
  for (const auto& [n, w] : m->source.weights) {
    double b = static_cast<double>(dtype_row_bytes(w.dtype, w.cols)) * static_cast<double>(w.rows);
    auto& e = by_type[std::string(dtype_name(w.dtype))];
    e.first += 1;
    e.second += b;
    total += b;
  }
  std::printf("tensor types      ");
  bool first = true;
  for (const auto& [t, e] : by_type) {
    std::printf("%s%s: %d tensors, %s", first ? "" : "; ", t.c_str(), e.first,
                human_bytes(e.second).c_str());
    first = false;
  }
  std::printf("\nweight memory     %s\n", human_bytes(total).c_str());
  if (!m->tokenizer) {
    std::printf("tokenizer         none (no tokenizer.json)\n");
    return 0;
  }
  const Tokenizer& tok = *m->tokenizer;
  std::printf("tokenizer         %d tokens, bos %d, eos %d, chat template %s\n", tok.vocab_size(),
              tok.bos_id(), tok.eos_id(), tok.chat_template().empty() ? "no" : "yes");
  return 0;
}

}  // namespace carpool::cli
