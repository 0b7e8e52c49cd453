// carpool: an LLM inference server that keeps its accelerator full.
#include <cstdio>
#include <cstring>
#include <string>

#include "cli/commands.h"

namespace {

constexpr const char* kUsage =
    "usage: carpool COMMAND [options]\n"
    "\n"
    "commands:\n"
    "  serve      serve a model over an OpenAI-compatible HTTP API\n"
    "  generate   generate text from a prompt, streamed as it is produced\n"
    "  tokenize   print the token ids of a text\n"
    "  inspect    describe a model: architecture, tensor types, parameters, memory\n"
    "  pull       fetch a known model (smollm2) into the per-user cache\n"
    "  bench      measure prefill and decode throughput, driving the engine directly\n"
    "\n"
    "Run 'carpool COMMAND --help' for a command's options. Without --model, commands use the\n"
    "default model, SmolLM2-135M-Instruct (GGUF Q4_1), pulled on first use.\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") ||
      !std::strcmp(argv[1], "help")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  using namespace carpool::cli;
  if (cmd == "serve") return cmd_serve(argc - 2, argv + 2);
  if (cmd == "generate") return cmd_generate(argc - 2, argv + 2);
  if (cmd == "tokenize") return cmd_tokenize(argc - 2, argv + 2);
  if (cmd == "inspect") return cmd_inspect(argc - 2, argv + 2);
  if (cmd == "pull") return cmd_pull(argc - 2, argv + 2);
  if (cmd == "bench") return cmd_bench(argc - 2, argv + 2);
  std::fprintf(stderr, "carpool: unknown command '%s'\n\n%s", cmd.c_str(), kUsage);
  return 2;
}
