// carpool generate: run one prompt to completion and stream the text as it is produced; or
// several (--prompt-ids A;B;...) together through the engine, printing each one's result.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "chat/chat_template.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/generate_batch.h"
#include "cli/load.h"
#include "engine/generator.h"
#include "tokenizer/stream_decoder.h"

namespace carpool::cli {

int cmd_generate(int argc, char** argv) {
  Args args(
      "generate", "Generates text from a prompt and streams it as it is produced.",
      {
          {"model", "m", "PATH_OR_NAME",
           "GGUF file, Hugging Face folder, known name, or synthetic:NAME", "smollm2"},
          {"prompt", "p", "TEXT", "the prompt", ""},
          {"prompt-ids", "", "IDS",
           "the prompt as comma-separated token ids (instead of --prompt); several prompts "
           "separated by ';' run together as one batch",
           ""},
          {"print-ids", "", "", "print the generated token ids as a JSON list at the end", ""},
          {"dump-logits", "", "PATH", "write the prompt's last-position logits (f32) to PATH", ""},
          {"max-tokens", "n", "N", "number of tokens to generate", "64"},
          {"temperature", "", "T", "sampling temperature; 0 is greedy", "0.8"},
          {"top-k", "", "K", "keep the K most likely tokens; 0 is off", "0"},
          {"top-p", "", "P", "nucleus sampling mass", "1.0"},
          {"min-p", "", "P", "drop tokens below P times the most likely", "0.0"},
          {"repetition-penalty", "", "R", "penalty on tokens already seen", "1.0"},
          {"frequency-penalty", "", "F", "penalty by count of generated occurrences", "0.0"},
          {"presence-penalty", "", "F", "penalty once per generated token", "0.0"},
          {"seed", "s", "N", "random seed; the same seed gives the same tokens", "-1 (random)"},
          {"ignore-eos", "", "", "keep generating after an end-of-generation token", ""},
          {"json", "", "", "JSON mode: the output is one JSON object", ""},
          {"chat", "", "", "wrap the prompt in the model's chat template as a user message", ""},
          {"chat-template", "", "PATH",
           "with --chat: this Jinja template file instead of the model's", ""},
          {"device", "", "DEVICE", "auto, cpu or cuda", "auto"},
          {"cpu-exact", "", "",
           "CPU: dequantize weights and compute in f32 (reference arithmetic, slower)", ""},
          {"kv-cache-dtype", "", "TYPE",
           "KV cache element type: auto (CPU f16, f32 with --cpu-exact; CUDA bf16), f16, f32, "
           "int8 (CPU: int8 with a scale per token and KV head, half of f16's memory), bf16",
           "auto"},
          {"threads", "t", "N", "CPU threads, up to 1024 (0: every core)", "0"},
      });
  if (Status st = args.parse(argc, argv); !st) {
    std::fprintf(stderr, "carpool generate: %s\n", st.message().c_str());
    return 2;
  }
  if (args.help_requested()) {
    std::fputs(args.help().c_str(), stdout);
    return 0;
  }
  auto fail = [](const std::string& msg) {
    std::fprintf(stderr, "carpool generate: %s\n", msg.c_str());
    return 1;
  };
  if (args.has("prompt") == args.has("prompt-ids"))
    return fail("give one of --prompt and --prompt-ids");
  if (args.flag("chat") && args.has("prompt-ids")) {
    return fail("--chat wraps a --prompt text in the chat template; it does not take --prompt-ids");
  }
  if (args.has("chat-template") && !args.flag("chat")) return fail("--chat-template needs --chat");
  std::optional<chat::ChatTemplate> chat_template_override;
  if (args.has("chat-template")) {
    auto tmpl = load_chat_template(args.get("chat-template"));
    if (!tmpl) return fail(tmpl.error());
    chat_template_override = std::move(tmpl).value();
  }
  auto n = args.get_int("max-tokens", 64);
  auto temp = args.get_float("temperature", 0.8);
  auto top_k = args.get_int("top-k", 0);
  auto top_p = args.get_float("top-p", 1.0);
  auto min_p = args.get_float("min-p", 0.0);
  auto rep = args.get_float("repetition-penalty", 1.0);
  auto freq = args.get_float("frequency-penalty", 0.0);
  auto pres = args.get_float("presence-penalty", 0.0);
  auto seed = args.get_int("seed", -1);
  auto threads = args.get_int("threads", 0);
  for (const Status& st :
       {n.status(), temp.status(), top_k.status(), top_p.status(), min_p.status(), rep.status(),
        freq.status(), pres.status(), seed.status(), threads.status()}) {
    if (!st) return fail(st.message());
  }
  GenerateOptions opt;
  opt.max_tokens = static_cast<int>(n.value());
  opt.sampling.temperature = static_cast<float>(temp.value());
  opt.sampling.top_k = static_cast<int>(top_k.value());
  opt.sampling.top_p = static_cast<float>(top_p.value());
  opt.sampling.min_p = static_cast<float>(min_p.value());
  opt.sampling.repetition_penalty = static_cast<float>(rep.value());
  opt.sampling.frequency_penalty = static_cast<float>(freq.value());
  opt.sampling.presence_penalty = static_cast<float>(pres.value());
  opt.sampling.seed = seed.value();
  if (seed.value() < -1) return fail("--seed must be -1 (random) or at least 0");
  if (Status st = opt.sampling.validate(); !st) return fail(st.message());
  if (n.value() < 0 || n.value() > 1000000) return fail("--max-tokens must be in [0, 1000000]");

  LoadOptions lo;
  lo.model = args.get("model");
  lo.device = args.get("device", "auto");
  lo.kv_cache_dtype = args.get("kv-cache-dtype", "auto");
  lo.threads = static_cast<int>(threads.value());
  lo.cpu_exact = args.flag("cpu-exact");
  auto lm = load_model(lo);
  if (!lm) return fail(lm.error());
  const Tokenizer* tok = lm->opened.tokenizer.get();
  std::vector<int32_t> ids;
  std::string prompt;
  if (args.has("prompt-ids")) {
    auto prompts = parse_prompt_ids(args.get("prompt-ids"), lm->model->config().vocab_size);
    if (!prompts) return fail(prompts.error());
    if (prompts->size() > 1) {
      if (args.has("dump-logits") || args.flag("json"))
        return fail("--dump-logits and --json take one prompt");
      if (tok && !args.flag("ignore-eos")) opt.stop_ids = tok->end_of_generation_ids();
      auto out = generate_batch(lm.value(), prompts.value(), opt, args.flag("ignore-eos"));
      if (!out) return fail(out.error());
      for (size_t i = 0; i < out->size(); ++i) {
        const std::vector<int32_t>& g = (*out)[i];
        if (args.flag("print-ids")) {
          std::printf(i == 0 ? "[[" : ", [");
          for (size_t j = 0; j < g.size(); ++j) std::printf(j ? ", %d" : "%d", g[j]);
          std::printf("]");
        } else if (tok) {
          std::printf("%s\n", tok->decode(g, /*skip_special=*/true).c_str());
        }
      }
      if (args.flag("print-ids")) std::printf("]\n");
      return 0;
    }
    ids = std::move(prompts->front());
  } else {
    if (!tok) return fail("this model has no tokenizer; use --prompt-ids");
    prompt = args.get("prompt");
    std::string text = prompt;
    if (args.flag("chat")) {
      if (!chat_template_override && tok->chat_template().empty()) {
        return fail("the model has no chat template; give one with --chat-template");
      }
      auto tmpl = chat_template_override ? Result<chat::ChatTemplate>(*chat_template_override)
                                         : chat::ChatTemplate::parse(tok->chat_template());
      if (!tmpl) return fail("chat template: " + tmpl.error());
      std::vector<chat::ChatMessage> messages{{"user", prompt}};
      auto rendered = tmpl->render_chat(messages, true, tok->token_text(tok->bos_id()),
                                        tok->token_text(tok->eos_id()));
      if (!rendered) return fail("chat template: " + rendered.error());
      text = rendered.value();
      prompt.clear();  // the answer is printed alone
    }
    ids = tok->encode(text, tok->add_bos_default(), true);
  }
  if (ids.empty()) return fail("the prompt is empty after tokenization");
  if (tok && !args.flag("ignore-eos")) opt.stop_ids = tok->end_of_generation_ids();
  if (args.flag("json")) {
    if (!tok) return fail("--json needs the model's tokenizer");
    if (args.flag("ignore-eos")) return fail("--json cannot be combined with --ignore-eos");
    opt.sampling.json_vocab = json_token_bytes(*tok);
  }
  std::fprintf(stderr, "carpool: %s on %s (%s), loaded in %.2f s\n",
               lm->model->config().name.c_str(), lm->backend->device_name().c_str(),
               lm->backend->name().c_str(), lm->load_s);

  if (args.has("dump-logits")) {
    auto logits = Generator(*lm->model).last_logits(ids);
    if (!logits) return fail(logits.error());
    FILE* f = std::fopen(args.get("dump-logits").c_str(), "wb");
    if (!f) return fail("cannot write " + args.get("dump-logits"));
    std::fwrite(logits->data(), sizeof(float), logits->size(), f);
    std::fclose(f);
  }
  std::fputs(prompt.c_str(), stdout);
  std::fflush(stdout);
  std::unique_ptr<StreamDecoder> dec;
  if (tok) dec = std::make_unique<StreamDecoder>(*tok, /*skip_special=*/true);
  std::vector<int32_t> generated;
  Generator gen(*lm->model);
  auto stats = gen.run(ids, opt, [&](int32_t t) {
    generated.push_back(t);
    if (dec && (!tok->is_end_of_generation(t) || args.flag("ignore-eos"))) {
      std::string piece = dec->push(t);
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    }
    return true;
  });
  if (dec) {
    std::string rest = dec->finish();
    std::fwrite(rest.data(), 1, rest.size(), stdout);
  }
  std::fputs("\n", stdout);
  if (!stats) return fail(stats.error());
  if (args.flag("print-ids")) {
    std::printf("[");
    for (size_t i = 0; i < generated.size(); ++i) std::printf(i ? ", %d" : "%d", generated[i]);
    std::printf("]\n");
  }
  const GenerateStats& s = stats.value();
  std::fprintf(
      stderr,
      "\nprompt: %d tokens in %.3f s (%.1f tokens/s) | generation: %d tokens in %.3f s "
      "(%.1f tokens/s)\n",
      s.prompt_tokens, s.prefill_s, s.prompt_tokens / std::max(s.prefill_s, 1e-9),
      s.generated_tokens, s.decode_s,
      s.generated_tokens > 1 ? (s.generated_tokens - 1) / std::max(s.decode_s, 1e-9) : 0.0);
  return 0;
}

}  // namespace carpool::cli
