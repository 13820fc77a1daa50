// libFuzzer target for receipt verification: any text as a signed receipt,
// checked against a fixed provider key and against the key the text itself
// names (so inputs that carry a well-formed signature field reach the
// signature and field checks). Must answer ok or an error, never crash.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "market/receipts.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  static constexpr std::string_view kKey = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29";
  (void)kvmart::market::VerifyReceipt(text, kKey);
  // The first 64 bytes as a key of their own (hex or not).
  if (size >= 64) (void)kvmart::market::VerifyReceipt(text.substr(64), text.substr(0, 64));
  return 0;
}
