#include "tokenizer/chat_template.h"

#include <nlohmann/json.hpp>

#include "tokenizer/utf8.h"

namespace kvmart::tokenizer {
namespace {

using ojson = nlohmann::ordered_json;

// ---- Python str helpers used by the template.

bool StartsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool EndsWith(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}
std::string_view LStripNl(std::string_view s) {
  while (!s.empty() && s.front() == '\n') s.remove_prefix(1);
  return s;
}
std::string_view RStripNl(std::string_view s) {
  while (!s.empty() && s.back() == '\n') s.remove_suffix(1);
  return s;
}
// s.split(sep)[0] and s.split(sep)[-1].
std::string_view SplitFirst(std::string_view s, std::string_view sep) {
  size_t p = s.find(sep);
  return p == std::string_view::npos ? s : s.substr(0, p);
}
std::string_view SplitLast(std::string_view s, std::string_view sep) {
  size_t p = s.rfind(sep);
  return p == std::string_view::npos ? s : s.substr(p + sep.size());
}

// json.dumps(x, ensure_ascii=False): ", " and ": " separators, keys in
// insertion order, non-ASCII kept, control characters as \u00xx.
void DumpPython(const ojson& j, std::string* out) {
  switch (j.type()) {
    case ojson::value_t::object: {
      out->push_back('{');
      bool first = true;
      for (auto it = j.begin(); it != j.end(); ++it) {
        if (!first) out->append(", ");
        first = false;
        DumpPython(ojson(it.key()), out);
        out->append(": ");
        DumpPython(it.value(), out);
      }
      out->push_back('}');
      return;
    }
    case ojson::value_t::array: {
      out->push_back('[');
      for (size_t i = 0; i < j.size(); ++i) {
        if (i > 0) out->append(", ");
        DumpPython(j[i], out);
      }
      out->push_back(']');
      return;
    }
    case ojson::value_t::string: {
      out->push_back('"');
      for (char c : j.get_ref<const std::string&>()) {
        switch (c) {
          case '"': out->append("\\\""); break;
          case '\\': out->append("\\\\"); break;
          case '\n': out->append("\\n"); break;
          case '\r': out->append("\\r"); break;
          case '\t': out->append("\\t"); break;
          case '\b': out->append("\\b"); break;
          case '\f': out->append("\\f"); break;
          default:
            if (static_cast<unsigned char>(c) < 0x20) {
              static const char* kHex = "0123456789abcdef";
              out->append("\\u00");
              out->push_back(kHex[(c >> 4) & 0xF]);
              out->push_back(kHex[c & 0xF]);
            } else {
              out->push_back(c);
            }
        }
      }
      out->push_back('"');
      return;
    }
    case ojson::value_t::boolean: out->append(j.get<bool>() ? "true" : "false"); return;
    case ojson::value_t::null: out->append("null"); return;
    default: out->append(j.dump()); return;  // numbers: shortest round-trip, like repr()
  }
}

constexpr std::string_view kToolsHeader =
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>";
constexpr std::string_view kToolsFooter =
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments "
    "within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
    "<args-json-object>}\n</tool_call><|im_end|>\n";

StatusOr<std::string> ContentOf(const ojson& m) {
  if (!m.contains("content") || m["content"].is_null()) return std::string();
  const ojson& c = m["content"];
  if (c.is_string()) return c.get<std::string>();
  if (c.is_array()) {
    std::string s;
    for (const ojson& part : c) {
      if (!part.is_object() || part.value("type", std::string()) != "text" || !part.contains("text") ||
          !part["text"].is_string()) {
        return Status::InvalidArgument("message content parts must be {\"type\":\"text\",\"text\":...}");
      }
      s += part["text"].get<std::string>();
    }
    return s;
  }
  return Status::InvalidArgument("message content must be a string, null or a list of text parts");
}

}  // namespace

StatusOr<std::string> RenderChat(std::span<const ChatMessage> messages, const ChatOptions& options) {
  if (messages.empty()) return Status::InvalidArgument("chat needs at least one message");
  for (const ChatMessage& m : messages) {
    if (m.role != "system" && m.role != "user" && m.role != "assistant" && m.role != "tool") {
      return Status::InvalidArgument("unknown chat role \"" + m.role + "\"");
    }
  }
  std::string out;
  const size_t n = messages.size();

  // System block, with the tool list when there are tools.
  ojson tools;
  if (!options.tools_json.empty()) {
    tools = ojson::parse(options.tools_json, nullptr, false);
    if (tools.is_discarded() || !(tools.is_array() || tools.is_null())) {
      return Status::InvalidArgument("tools must be a JSON array");
    }
  }
  if (tools.is_array() && !tools.empty()) {
    out += "<|im_start|>system\n";
    if (messages[0].role == "system") out += messages[0].content + "\n\n";
    out += kToolsHeader;
    for (const ojson& t : tools) {
      out += "\n";
      DumpPython(t, &out);
    }
    out += kToolsFooter;
  } else if (messages[0].role == "system") {
    out += "<|im_start|>system\n" + messages[0].content + "<|im_end|>\n";
  }

  // The last real user query: tool responses wrapped as user turns don't count.
  size_t last_query_index = n - 1;
  for (size_t k = n; k-- > 0;) {
    const ChatMessage& m = messages[k];
    if (m.role == "user" &&
        !(StartsWith(m.content, "<tool_response>") && EndsWith(m.content, "</tool_response>"))) {
      last_query_index = k;
      break;
    }
  }

  for (size_t i = 0; i < n; ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "user" || (m.role == "system" && i != 0)) {
      out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
    } else if (m.role == "assistant") {
      std::string_view content = m.content;
      std::string_view reasoning;
      if (m.reasoning_content.has_value()) {
        reasoning = *m.reasoning_content;
      } else if (m.content.find("</think>") != std::string::npos) {
        content = LStripNl(SplitLast(m.content, "</think>"));
        reasoning = LStripNl(SplitLast(RStripNl(SplitFirst(m.content, "</think>")), "<think>"));
      }
      if (i > last_query_index && (i == n - 1 || !reasoning.empty())) {
        out += "<|im_start|>assistant\n<think>\n";
        out += LStripNl(RStripNl(reasoning));
        out += "\n</think>\n\n";
        out += LStripNl(content);
      } else {
        out += "<|im_start|>assistant\n";
        out += content;
      }
      for (size_t k = 0; k < m.tool_calls.size(); ++k) {
        if (k > 0 || !content.empty()) out += "\n";
        out += "<tool_call>\n{\"name\": \"" + m.tool_calls[k].name + "\", \"arguments\": " +
               m.tool_calls[k].arguments + "}\n</tool_call>";
      }
      out += "<|im_end|>\n";
    } else if (m.role == "tool") {  // consecutive results share one user turn
      if (i == 0 || messages[i - 1].role != "tool") out += "<|im_start|>user";
      out += "\n<tool_response>\n" + m.content + "\n</tool_response>";
      if (i == n - 1 || messages[i + 1].role != "tool") out += "<|im_end|>\n";
    }
  }
  if (options.add_generation_prompt) {
    out += "<|im_start|>assistant\n";
    if (options.enable_thinking.has_value() && !*options.enable_thinking) out += "<think>\n\n</think>\n\n";
  }
  return out;
}

StatusOr<std::vector<ChatMessage>> ChatMessagesFromJson(std::string_view json_text) {
  ojson j = ojson::parse(json_text, nullptr, false);
  if (j.is_discarded() || !j.is_array()) return Status::InvalidArgument("messages must be a JSON array");
  std::vector<ChatMessage> out;
  for (const ojson& m : j) {
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
      return Status::InvalidArgument("each message needs a string \"role\"");
    }
    ChatMessage msg;
    msg.role = m["role"].get<std::string>();
    KVMART_ASSIGN_OR_RETURN(msg.content, ContentOf(m));
    if (m.contains("reasoning_content") && m["reasoning_content"].is_string()) {
      msg.reasoning_content = m["reasoning_content"].get<std::string>();
    }
    if (m.contains("tool_calls") && m["tool_calls"].is_array()) {
      for (const ojson& tc0 : m["tool_calls"]) {
        const ojson& tc = tc0.contains("function") && tc0["function"].is_object() ? tc0["function"] : tc0;
        if (!tc.contains("name") || !tc["name"].is_string()) {
          return Status::InvalidArgument("tool call without a string \"name\"");
        }
        ToolCall call;
        call.name = tc["name"].get<std::string>();
        if (tc.contains("arguments") && tc["arguments"].is_string()) {
          call.arguments = tc["arguments"].get<std::string>();
        } else {
          DumpPython(tc.contains("arguments") ? tc["arguments"] : ojson(nullptr), &call.arguments);
        }
        msg.tool_calls.push_back(std::move(call));
      }
    }
    out.push_back(std::move(msg));
  }
  return out;
}

StatusOr<std::vector<TokenId>> EncodeChatPrefix(const Tokenizer& tokenizer, std::span<const ChatMessage> prefix,
                                                const ChatOptions& options) {
  ChatOptions o = options;
  o.add_generation_prompt = false;
  KVMART_ASSIGN_OR_RETURN(std::string text, RenderChat(prefix, o));
  return tokenizer.Encode(text);
}

StatusOr<std::vector<TokenId>> ContinueChat(const Tokenizer& tokenizer, std::span<const ChatMessage> prefix,
                                            std::span<const ChatMessage> continuation, const ChatOptions& options) {
  ChatOptions po = options;
  po.add_generation_prompt = false;
  KVMART_ASSIGN_OR_RETURN(std::string prefix_text, RenderChat(prefix, po));
  std::vector<ChatMessage> all(prefix.begin(), prefix.end());
  all.insert(all.end(), continuation.begin(), continuation.end());
  KVMART_ASSIGN_OR_RETURN(std::string full, RenderChat(all, options));
  if (!StartsWith(full, prefix_text)) {
    return Status::FailedPrecondition(
        "the chat template renders the prefix turns differently once the continuation is added "
        "(e.g. an earlier assistant turn loses its reasoning): the prefix tokens are not reusable");
  }
  std::string_view rest = std::string_view(full).substr(prefix_text.size());
  KVMART_ASSIGN_OR_RETURN(std::vector<TokenId> ids, tokenizer.Encode(rest));
  // Added tokens are matched before normalization and BPE and end every
  // section, so a joint right before one cannot change the tokens on either
  // side: that is what makes prefix ++ continuation == Encode(full).
  if (!ids.empty()) {
    auto first = tokenizer.TokenBytes(ids[0]);
    if (!tokenizer.IsAddedToken(ids[0]) || !first.ok() || !StartsWith(rest, *first)) {
      return Status::FailedPrecondition("the continuation does not start with an added token; "
                                        "token concatenation would not equal the rendering's tokens");
    }
  }
  return ids;
}

}  // namespace kvmart::tokenizer
