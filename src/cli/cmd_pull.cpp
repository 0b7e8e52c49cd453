// carpool pull: fetch a known model into the per-user cache.
#include <cstdio>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/model_store.h"

namespace carpool::cli {

int cmd_pull(int argc, char** argv) {
  Args args("pull",
            "Fetches a known model into the per-user cache (" + cache_dir() +
                "/models).\n"
                "Known models: smollm2 (SmolLM2-135M-Instruct, GGUF Q4_1, the default).",
            {}, "NAME");
  if (Status st = args.parse(argc, argv); !st) {
    std::fprintf(stderr, "carpool pull: %s\n", st.message().c_str());
    return 2;
  }
  if (args.help_requested()) {
    std::fputs(args.help().c_str(), stdout);
    return 0;
  }
  std::string name = args.positional().empty() ? default_model().name : args.positional()[0];
  const KnownModel* m = find_known_model(name);
  if (!m) {
    std::fprintf(stderr, "carpool pull: unknown model '%s' (known: smollm2)\n", name.c_str());
    return 1;
  }
  auto path = pull_model(*m);
  if (!path) {
    std::fprintf(stderr, "carpool pull: %s\n", path.error().c_str());
    return 1;
  }
  std::printf("%s\n", path.value().c_str());
  return 0;
}

}  // namespace carpool::cli
