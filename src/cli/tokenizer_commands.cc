// `kvmart tokenize` and `kvmart detokenize`.
#include <iostream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace kvmart::cli {
namespace {

struct TokenizeArgs {
  std::string tokenizer;
  std::string text;
  bool chat = false;
  bool json = false;
};

struct DetokenizeArgs {
  std::string tokenizer;
  std::vector<int64_t> ids;
  bool skip_special = false;
};

int Fail(const Status& s) {
  std::cerr << "error: " << s.ToString() << "\n";
  return 1;
}

int RunTokenize(const TokenizeArgs& a) {
  auto tok = tokenizer::Tokenizer::Load(a.tokenizer);
  if (!tok.ok()) return Fail(tok.status());
  std::string text = a.text;
  if (text == "-") text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  if (a.chat) {
    // TEXT is one user message; the rendering ends with the generation prompt.
    std::vector<tokenizer::ChatMessage> msgs = {{"user", text, std::nullopt, {}}};
    tokenizer::ChatOptions opts;
    opts.add_generation_prompt = true;
    auto rendered = tokenizer::RenderChat(msgs, opts);
    if (!rendered.ok()) return Fail(rendered.status());
    text = *rendered;
  }
  auto ids = (*tok)->Encode(text);
  if (!ids.ok()) return Fail(ids.status());
  std::string out;
  if (a.json) out += "[";
  for (size_t i = 0; i < ids->size(); ++i) {
    if (i > 0) out += a.json ? "," : " ";
    out += std::to_string((*ids)[i]);
  }
  if (a.json) out += "]";
  std::cout << out << "\n";
  return 0;
}

int RunDetokenize(const DetokenizeArgs& a) {
  auto tok = tokenizer::Tokenizer::Load(a.tokenizer);
  if (!tok.ok()) return Fail(tok.status());
  std::vector<tokenizer::TokenId> ids;
  for (int64_t id : a.ids) {
    if (id < 0 || id > INT32_MAX) return Fail(Status::InvalidArgument("token id out of range: " + std::to_string(id)));
    ids.push_back(static_cast<tokenizer::TokenId>(id));
  }
  auto text = (*tok)->Decode(ids, a.skip_special);
  if (!text.ok()) return Fail(text.status());
  std::cout << *text;
  if (text->empty() || text->back() != '\n') std::cout << "\n";
  return 0;
}

}  // namespace

void RegisterTokenizerCommands(CLI::App& app, int* exit_code) {
  auto targs = std::make_shared<TokenizeArgs>();
  CLI::App* t = app.add_subcommand("tokenize", "Print the token ids of TEXT (or stdin with -)");
  t->add_option("--tokenizer", targs->tokenizer, "tokenizer.json")->default_val(BundledDataDir() + "/tokenizer.json");
  t->add_flag("--chat", targs->chat, "Wrap TEXT as one user turn of the chat template, with the generation prompt");
  t->add_flag("--json", targs->json, "Print a JSON array");
  t->add_option("text", targs->text, "Text, or - for stdin")->required();
  t->callback([targs, exit_code] { *exit_code = RunTokenize(*targs); });

  auto dargs = std::make_shared<DetokenizeArgs>();
  CLI::App* d = app.add_subcommand("detokenize", "Print the text of token ids");
  d->add_option("--tokenizer", dargs->tokenizer, "tokenizer.json")->default_val(BundledDataDir() + "/tokenizer.json");
  d->add_flag("--skip-special", dargs->skip_special, "Leave out special tokens");
  d->add_option("ids", dargs->ids, "Token ids")->required();
  d->callback([dargs, exit_code] { *exit_code = RunDetokenize(*dargs); });
}

}  // namespace kvmart::cli
