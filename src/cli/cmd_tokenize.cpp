// carpool tokenize: print the token ids of a text.
#include <cstdio>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/model_store.h"
#include "model/open_model.h"

namespace carpool::cli {

int cmd_tokenize(int argc, char** argv) {
  Args args("tokenize", "Prints the token ids of a text, as the model's tokenizer encodes it.",
            {
                {"model", "m", "PATH_OR_NAME",
                 "GGUF file, folder with tokenizer.json, or known name", "smollm2"},
                {"text", "", "TEXT", "the text to encode", ""},
                {"add-bos", "", "", "add the BOS token even if the model does not ask for it", ""},
                {"no-special", "", "", "encode special-token text as plain text", ""},
                {"pieces", "", "", "print each token's text beside its id", ""},
            });
  if (Status st = args.parse(argc, argv); !st) {
    std::fprintf(stderr, "carpool tokenize: %s\n", st.message().c_str());
    return 2;
  }
  if (args.help_requested()) {
    std::fputs(args.help().c_str(), stdout);
    return 0;
  }
  if (!args.has("text")) {
    std::fprintf(stderr, "carpool tokenize: --text is required\n");
    return 2;
  }
  auto path = resolve_model_path(args.get("model"));
  if (!path) {
    std::fprintf(stderr, "carpool tokenize: %s\n", path.error().c_str());
    return 1;
  }
  auto tok = open_tokenizer(path.value());
  if (!tok) {
    std::fprintf(stderr, "carpool tokenize: %s\n", tok.error().c_str());
    return 1;
  }
  const Tokenizer& t = *tok.value();
  auto ids = t.encode(args.get("text"), args.flag("add-bos") || t.add_bos_default(),
                      !args.flag("no-special"));
  if (args.flag("pieces")) {
    for (int32_t id : ids) {
      std::string_view s = t.token_text(id);
      std::printf("%d\t%.*s\n", id, static_cast<int>(s.size()), s.data());
    }
    return 0;
  }
  std::printf("[");
  for (size_t i = 0; i < ids.size(); ++i) std::printf(i ? ", %d" : "%d", ids[i]);
  std::printf("]\n");
  return 0;
}

}  // namespace carpool::cli
