// The Qwen3 chat template, hand-written (no Jinja engine is packaged), and the
// prefix contract that lets a stored KV artifact be a token prefix of a request.
//
// RenderChat reproduces, character for character, what the Jinja template in
// Qwen3's tokenizer_config.json renders under Hugging Face transformers'
// settings (trim_blocks, lstrip_blocks, `tojson` = json.dumps with
// ensure_ascii=False). tests/tokenizer/chat_template_test.cc checks it against
// real jinja2 renderings.
//
// Prefix contract (docs/PREFIX_CONTRACT.md): never re-tokenize joined text to
// extend a cached prefix, because BPE merges across the joint. Build requests
// as EncodeChatPrefix(prefix) ++ ContinueChat(prefix, continuation): that
// concatenation equals Encode(RenderChat(prefix + continuation)) exactly, or
// ContinueChat fails.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "tokenizer/tokenizer.h"

namespace kvmart::tokenizer {

struct ToolCall {
  std::string name;
  // Emitted verbatim: the JSON text of the arguments (an OpenAI-style string
  // `arguments`, or the Python-style dump of an object, see ChatMessagesFromJson).
  std::string arguments;
};

struct ChatMessage {
  std::string role;  // "system", "user", "assistant" or "tool"
  std::string content;
  // Assistant only. When absent, a "<think>...</think>" block inside content
  // is split off as the reasoning, as the template does.
  std::optional<std::string> reasoning_content;
  std::vector<ToolCall> tool_calls;  // assistant only
};

struct ChatOptions {
  bool add_generation_prompt = false;
  // Unset = the template's default (thinking allowed). false appends the empty
  // think block after the generation prompt.
  std::optional<bool> enable_thinking;
  // JSON array of tool (function) schemas, or empty for none.
  std::string tools_json;
};

// Renders `messages` (at least one). Unknown roles are an InvalidArgument
// error (the Jinja template would silently drop them).
StatusOr<std::string> RenderChat(std::span<const ChatMessage> messages, const ChatOptions& options);

// Parses an OpenAI-style JSON array of messages: content may be a string, null
// (as ""), or a list of {"type":"text","text":...} parts (joined); tool_calls
// entries may wrap {name, arguments} in "function"; object arguments are
// serialised like the template's `tojson`.
StatusOr<std::vector<ChatMessage>> ChatMessagesFromJson(std::string_view json_text);

// Token ids of the prefix turns: Encode(RenderChat(prefix, options without the
// generation prompt)). The rendering ends with "<|im_end|>\n".
StatusOr<std::vector<TokenId>> EncodeChatPrefix(const Tokenizer& tokenizer, std::span<const ChatMessage> prefix,
                                                const ChatOptions& options);

// Token ids that follow EncodeChatPrefix(prefix) to form the request
// prefix + continuation (with options.add_generation_prompt). Fails with
// FailedPrecondition when the template renders the prefix turns differently
// once the continuation is appended (e.g. it drops an earlier assistant's
// reasoning), or when the joint does not fall before an added token.
StatusOr<std::vector<TokenId>> ContinueChat(const Tokenizer& tokenizer, std::span<const ChatMessage> prefix,
                                            std::span<const ChatMessage> continuation, const ChatOptions& options);

}  // namespace kvmart::tokenizer
