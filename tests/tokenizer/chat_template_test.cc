#include "tokenizer/chat_template.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "testing/qwen3_tokenizer.h"

namespace kvmart::tokenizer {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

const Tokenizer& Qwen3() { return testing::Qwen3Tokenizer(); }

// Conversations covering every branch of the Qwen3 template.
std::vector<json> Cases() {
  const json weather_tool = json::parse(R"({"type": "function", "function": {"name": "get_weather",
      "description": "Weather in a city, \"quoted\" & <tagged>\n", "parameters": {"type": "object",
      "properties": {"city": {"type": "string", "description": "名前 🌍"}, "days": {"type": "integer",
      "minimum": 1, "maximum": 7.5}}, "required": ["city"]}}})");
  const json calc_tool = json::parse(R"({"type": "function", "function": {"name": "calc", "parameters": {}}})");
  std::vector<json> c;
  auto add = [&](const char* messages, bool gen, std::optional<bool> thinking = std::nullopt,
                 std::optional<json> tools = std::nullopt) {
    json cs;
    cs["messages"] = json::parse(messages);
    cs["add_generation_prompt"] = gen;
    if (thinking) cs["enable_thinking"] = *thinking;
    if (tools) cs["tools"] = *tools;
    c.push_back(cs);
  };
  add(R"([{"role":"user","content":"Hello!"}])", true);
  add(R"([{"role":"user","content":"Hello!"}])", true, false);
  add(R"([{"role":"user","content":"Hello!"}])", true, true);
  add(R"([{"role":"user","content":"Hello!"}])", false, false);
  add(R"([{"role":"system","content":"You are terse."},{"role":"user","content":"2+2?"}])", true, false);
  add(R"([{"role":"system","content":"S"},{"role":"user","content":"q1"},{"role":"assistant","content":"a1"},
          {"role":"user","content":"q2"}])", true, true);
  // Reasoning in content, before and after the last query.
  add(R"([{"role":"user","content":"q1"},{"role":"assistant","content":"<think>\nr1\n</think>\n\na1"},
          {"role":"user","content":"q2"},{"role":"assistant","content":"<think>\n\nr2\n\n</think>\n\n\na2"}])", false);
  add(R"([{"role":"user","content":"q1"},{"role":"assistant","content":"no open tag</think>a1"}])", true);
  add(R"([{"role":"user","content":"q1"},{"role":"assistant","content":"<think>x</think>y</think>z"}])", false);
  // reasoning_content field, including an explicit empty one.
  add(R"([{"role":"user","content":"q1"},{"role":"assistant","content":"a1","reasoning_content":"because"},
          {"role":"user","content":"q2"},{"role":"assistant","content":"a2","reasoning_content":"\nthink more\n"}])", false);
  add(R"([{"role":"user","content":"q1"},{"role":"assistant","content":"<think>r</think>a1","reasoning_content":""}])", false);
  add(R"([{"role":"user","content":"q1"},{"role":"assistant","content":"plain answer"}])", false);
  // Tools: definitions, calls (string and object arguments), responses.
  add(R"([{"role":"system","content":"Use tools."},{"role":"user","content":"Weather in Paris?"}])", true,
      std::nullopt, json::array({weather_tool, calc_tool}));
  add(R"([{"role":"user","content":"Weather in Paris?"}])", true, false, json::array({weather_tool}));
  add(R"([{"role":"user","content":"Weather in Paris and 東京?"},
          {"role":"assistant","content":"","reasoning_content":"need two calls","tool_calls":[
             {"type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"Paris\"}"}},
             {"type":"function","function":{"name":"get_weather","arguments":{"city":"東京","days":2,"x":[1.5,null,true],"q":"a\"b\\c\n\u0001"}}}]},
          {"role":"tool","content":"{\"temp\": 21}"},
          {"role":"tool","content":"晴れ 25°C"},
          {"role":"assistant","content":"Paris 21, Tokyo 25.","reasoning_content":"combine"}])", true,
      std::nullopt, json::array({weather_tool}));
  add(R"([{"role":"user","content":"calc"},
          {"role":"assistant","content":"Let me compute.","tool_calls":[{"name":"calc","arguments":{"expr":"1+1"}}]},
          {"role":"tool","content":"2"},
          {"role":"user","content":"<tool_response>\n3\n</tool_response>"},
          {"role":"assistant","content":"<think>\nok\n</think>\n\nIt is 2."}])", true, false,
      json::array({calc_tool}));
  add(R"([{"role":"tool","content":"orphan result"},{"role":"user","content":"hi"}])", true);
  add(R"([{"role":"user","content":"a"},{"role":"system","content":"mid-conversation system"},
          {"role":"user","content":"b"}])", true, true);
  add(R"([{"role":"system","content":"Système: réponds en français 🇫🇷"},{"role":"user","content":"  spaced  \n\n"},
          {"role":"assistant","content":"\n\nleading newlines"},{"role":"user","content":"中文问题？"}])", true, false);
  add(R"([{"role":"user","content":"q"},{"role":"assistant","content":"a","tool_calls":[]}])", false);
  return c;
}

ChatOptions OptionsOf(const json& cs) {
  ChatOptions o;
  o.add_generation_prompt = cs.value("add_generation_prompt", false);
  if (cs.contains("enable_thinking")) o.enable_thinking = cs["enable_thinking"].get<bool>();
  if (cs.contains("tools")) o.tools_json = cs["tools"].dump();
  return o;
}

TEST(ChatTemplateTest, MatchesJinjaRenderings) {
  std::vector<json> cases = Cases();
  fs::path dir = fs::temp_directory_path() / ("kvmart-chat-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::path in = dir / "cases.jsonl", out = dir / "rendered.jsonl";
  {
    std::ofstream f(in, std::ios::binary);
    for (const json& cs : cases) f << cs.dump() << "\n";
  }
  // python3 with jinja2 from PATH (`make setup` installs both).
  ASSERT_EQ(std::system("python3 -c 'import jinja2' 2>/dev/null"), 0)
      << "python3 with python3-jinja2 is required: run `make setup`";
  const std::string cmd = "python3 '" + std::string(KVMART_SOURCE_DIR) +
                          "/tests/tokenizer/render_chat.py' '" +
                          std::string(KVMART_DATA_DIR) + "/tokenizer_config.json' '" + in.string() + "' '" +
                          out.string() + "'";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream f(out, std::ios::binary);
  std::string line;
  size_t i = 0;
  while (std::getline(f, line)) {
    ASSERT_LT(i, cases.size());
    const std::string want = json::parse(line).get<std::string>();
    auto msgs = ChatMessagesFromJson(cases[i]["messages"].dump());
    ASSERT_TRUE(msgs.ok()) << msgs.status().ToString();
    auto got = RenderChat(*msgs, OptionsOf(cases[i]));
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(*got, want) << "case " << i << ": " << cases[i].dump();
    ++i;
  }
  EXPECT_EQ(i, cases.size());
  fs::remove_all(dir);
}

TEST(ChatTemplateTest, KnownRendering) {
  std::vector<ChatMessage> msgs = {{"system", "S", std::nullopt, {}}, {"user", "Hi", std::nullopt, {}}};
  ChatOptions o;
  o.add_generation_prompt = true;
  o.enable_thinking = false;
  EXPECT_EQ(*RenderChat(msgs, o),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\n<think>\n\n</think>\n\n");
}

TEST(ChatTemplateTest, RejectsBadInput) {
  EXPECT_EQ(RenderChat({}, ChatOptions{}).status().code(), Status::Code::kInvalidArgument);
  std::vector<ChatMessage> bad = {{"robot", "x", std::nullopt, {}}};
  EXPECT_EQ(RenderChat(bad, ChatOptions{}).status().code(), Status::Code::kInvalidArgument);
  EXPECT_FALSE(ChatMessagesFromJson("{}").ok());
  EXPECT_FALSE(ChatMessagesFromJson(R"([{"content":"no role"}])").ok());
  auto parts = ChatMessagesFromJson(R"([{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
                                        {"role":"assistant","content":null}])");
  ASSERT_TRUE(parts.ok());
  EXPECT_EQ((*parts)[0].content, "ab");
  EXPECT_EQ((*parts)[1].content, "");
}

// The prefix contract: prefix tokens ++ continuation tokens == tokens of the
// full rendering, for every case whose prefix turns render stably.
TEST(PrefixContractTest, ConcatenationEqualsFullEncoding) {
  const std::string doc = "Chapter 1.\n\nIt was a bright cold day in April, and the clocks were striking "
                          "thirteen. 数字 12345 — naïve café 🙂";
  std::vector<ChatMessage> prefix = {{"system", "Answer from the document.", std::nullopt, {}},
                                     {"user", doc, std::nullopt, {}}};
  std::vector<ChatMessage> cont = {{"user", "What day was it?", std::nullopt, {}}};
  for (std::optional<bool> thinking : {std::optional<bool>(), std::optional<bool>(false)}) {
    ChatOptions o;
    o.add_generation_prompt = true;
    o.enable_thinking = thinking;
    auto p = EncodeChatPrefix(Qwen3(), prefix, o);
    auto c = ContinueChat(Qwen3(), prefix, cont, o);
    ASSERT_TRUE(p.ok() && c.ok()) << c.status().ToString();
    std::vector<ChatMessage> all = prefix;
    all.insert(all.end(), cont.begin(), cont.end());
    auto full = Qwen3().Encode(*RenderChat(all, o));
    ASSERT_TRUE(full.ok());
    std::vector<TokenId> joined = *p;
    joined.insert(joined.end(), c->begin(), c->end());
    EXPECT_EQ(joined, *full);
  }
  // Every Jinja case, cut after each complete turn whose rendering is stable.
  for (const json& cs : Cases()) {
    auto msgs = *ChatMessagesFromJson(cs["messages"].dump());
    ChatOptions o = OptionsOf(cs);
    std::vector<ChatMessage> all = msgs;
    auto full = Qwen3().Encode(*RenderChat(all, o));
    for (size_t cut = 1; cut < msgs.size(); ++cut) {
      std::span<const ChatMessage> pre(msgs.data(), cut), rest(msgs.data() + cut, msgs.size() - cut);
      auto c = ContinueChat(Qwen3(), pre, rest, o);
      if (!c.ok()) {
        EXPECT_EQ(c.status().code(), Status::Code::kFailedPrecondition);
        continue;
      }
      std::vector<TokenId> joined = *EncodeChatPrefix(Qwen3(), pre, o);
      joined.insert(joined.end(), c->begin(), c->end());
      EXPECT_EQ(joined, *full) << cs.dump() << " cut " << cut;
    }
  }
}

TEST(PrefixContractTest, UnstablePrefixIsRefused) {
  // The last assistant turn keeps its reasoning only while no newer user query
  // follows; appending one changes the prefix rendering.
  std::vector<ChatMessage> prefix = {{"user", "q1", std::nullopt, {}}, {"assistant", "a1", "r1", {}}};
  std::vector<ChatMessage> cont = {{"user", "q2", std::nullopt, {}}};
  auto c = ContinueChat(Qwen3(), prefix, cont, ChatOptions{});
  EXPECT_EQ(c.status().code(), Status::Code::kFailedPrecondition);
}

TEST(PrefixContractTest, JoinedTextIsNotTokenConcatenation) {
  // Why the contract exists: BPE merges across a textual joint.
  auto a = *Qwen3().Encode("The document ends with hello wor");
  auto b = *Qwen3().Encode("ld");
  auto ab = *Qwen3().Encode("The document ends with hello world");
  std::vector<TokenId> joined = a;
  joined.insert(joined.end(), b.begin(), b.end());
  EXPECT_NE(joined, ab);
}

}  // namespace
}  // namespace kvmart::tokenizer
