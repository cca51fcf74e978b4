// Proves the UTF-8 helpers accept exactly valid UTF-8, repair broken bytes one U+FFFD per
// maximal subpart (in one go and streamed), and that NFC agrees with Python's unicodedata.
#include "runtime/text/unicode.hpp"

#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>

#include <gtest/gtest.h>

#include "tests/test_data.hpp"

namespace troupe {
namespace {
using namespace unicode;

TEST(unicode, encodes_and_decodes_every_length) {
  for (uint32_t cp : {0x0u, 0x41u, 0x7Fu, 0x80u, 0x7FFu, 0x800u, 0xFFFDu, 0xFFFFu, 0x10000u, 0x1F999u, 0x10FFFFu}) {
    std::string s;
    append_utf8(s, cp);
    EXPECT_TRUE(is_valid_utf8(s)) << cp;
    size_t i = 0;
    EXPECT_EQ(next_cp(s, i), cp);
    EXPECT_EQ(i, s.size());
  }
}

TEST(unicode, validity_follows_the_standard) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_TRUE(is_valid_utf8("h\xC3\xA9llo \xF0\x9F\xA6\x99"));
  EXPECT_FALSE(is_valid_utf8("\xC0\x80"));          // overlong NUL
  EXPECT_FALSE(is_valid_utf8("\xE0\x80\xAF"));      // overlong '/'
  EXPECT_FALSE(is_valid_utf8("\xED\xA0\x80"));      // a surrogate
  EXPECT_FALSE(is_valid_utf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(is_valid_utf8("\xF0\x9F\xA6"));      // cut short
  EXPECT_FALSE(is_valid_utf8("\x80"));
  EXPECT_FALSE(is_valid_utf8("\xFF"));
}

TEST(unicode, repairs_one_replacement_per_maximal_subpart) {
  // The Unicode standard's own example (section 3.9, U+FFFD substitution of maximal subparts).
  const std::string in = "\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64";
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(to_valid_utf8(in), "a" + r + r + r + "b" + r + "c" + r + r + "d");
  EXPECT_EQ(to_valid_utf8("ok"), "ok");
  EXPECT_EQ(to_valid_utf8("\xF0\x9F\xA6"), r);  // an open tail is one subpart
}

TEST(unicode, streaming_repair_holds_back_only_an_open_tail) {
  std::string out;
  EXPECT_EQ(append_utf8_lossy(out, "ab\xF0\x9F", false), 2u);
  EXPECT_EQ(out, "ab");
  out.clear();
  EXPECT_EQ(append_utf8_lossy(out, "\xF0\x9F\xA6\x99!", false), 5u);
  EXPECT_EQ(out, "\xF0\x9F\xA6\x99!");
  out.clear();
  // A byte that cannot continue the sequence settles it at once.
  EXPECT_EQ(append_utf8_lossy(out, "\xF0\x9F" "a\xE2", false), 3u);
  EXPECT_EQ(out, "\xEF\xBF\xBD" "a");

  // Fed in random chunks, the result is the same as in one go.
  std::mt19937 rng(1);
  std::uniform_int_distribution<int> byte(0, 255), cut(0, 6);
  for (int round = 0; round < 2000; ++round) {
    std::string bytes;
    for (int k = 0; k < 24; ++k) {
      const int b = byte(rng);
      bytes.push_back(static_cast<char>(b < 128 ? 0xF0 + b % 5 : b));  // many lead bytes
    }
    std::string streamed, pending;
    for (size_t i = 0; i < bytes.size();) {
      const size_t n = std::min<size_t>(cut(rng), bytes.size() - i);
      pending.append(bytes, i, n);
      i += n;
      std::string piece;
      pending.erase(0, append_utf8_lossy(piece, pending, false));
      EXPECT_TRUE(is_valid_utf8(piece));
      streamed += piece;
    }
    append_utf8_lossy(streamed, pending, true);
    EXPECT_EQ(streamed, to_valid_utf8(bytes));
  }
}

TEST(unicode, nfc_composes_reorders_and_leaves_nfc_alone) {
  EXPECT_EQ(nfc("cafe\xCC\x81"), "caf\xC3\xA9");                     // e + U+0301 -> é
  EXPECT_EQ(nfc("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8"), "\xEA\xB0\x81");  // Hangul L V T -> 각
  EXPECT_EQ(nfc("\xE2\x84\xA6"), "\xCE\xA9");                        // Ohm sign -> Omega
  EXPECT_EQ(nfc("a\xCC\x82\xCC\xA3"), "\xE1\xBA\xAD");                // a + ^ + dot below -> ậ
  EXPECT_EQ(nfc("\xE0\xA5\x98"), "\xE0\xA4\x95\xE0\xA4\xBC");         // U+0958 is excluded from composition
  const std::string already = "Hello, w\xC3\xB6rld \xF0\x9F\xA6\x99 \xE4\xBD\xA0\xE5\xA5\xBD";
  EXPECT_EQ(nfc(already), already);
}

// Every code point that NFC changes, and random mixes of bases, marks and jamo, against
// Python's unicodedata (the Unicode version of the generated tables).
TEST(unicode, nfc_agrees_with_python_unicodedata) {
  std::vector<std::string> cases;
  for (uint32_t cp = 0xA0; cp < 0x30000; ++cp) {
    if (cp >= 0xD800 && cp < 0xE000) continue;
    std::string s;
    append_utf8(s, cp);
    if (nfc(s) != s || cp % 97 == 0) cases.push_back(s);
  }
  const uint32_t pool[] = {'a', 'e', 'o', 'A', 0x391, 0x3B1, 0x415, 0x627, 0x915, 0x1100, 0x1161, 0x11A8, 0xAC00,
                           0x300, 0x301, 0x302, 0x308, 0x323, 0x327, 0x328, 0x345, 0x93C, 0x94D, 0x1B35, 0x3099};
  std::mt19937 rng(3);
  std::uniform_int_distribution<size_t> pick(0, std::size(pool) - 1), len(1, 7);
  for (int i = 0; i < 3000; ++i) {
    std::string s;
    for (size_t k = len(rng); k > 0; --k) append_utf8(s, pool[pick(rng)]);
    cases.push_back(s);
  }
  const std::string in_path = ::testing::TempDir() + "/nfc-in.txt";
  const std::string out_path = ::testing::TempDir() + "/nfc-out.txt";
  {
    std::ofstream f(in_path, std::ios::binary);
    for (const auto& c : cases) f << c << '\n';
  }
  const std::string cmd = testing::python() +
                          " -c \"import sys, unicodedata; "
                          "[sys.stdout.buffer.write((unicodedata.normalize('NFC', l.rstrip('\\n')) + '\\n').encode()) "
                          "for l in open(sys.argv[1], encoding='utf-8')]\" " +
                          in_path + " > " + out_path;
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream f(out_path, std::ios::binary);
  size_t i = 0, differ = 0;
  for (std::string line; std::getline(f, line); ++i) {
    ASSERT_LT(i, cases.size());
    if (nfc(cases[i]) != line && ++differ <= 10) ADD_FAILURE() << "NFC differs for case " << i;
  }
  EXPECT_EQ(i, cases.size());
  EXPECT_EQ(differ, 0u);
}

TEST(unicode, byte_alphabet_is_a_bijection_onto_printable_characters) {
  const auto& t = byte_to_cp();
  EXPECT_EQ(t['A'], uint32_t{'A'});
  EXPECT_EQ(t[' '], 0x120u);   // Ġ
  EXPECT_EQ(t['\n'], 0x10Au);  // Ċ
  for (int b = 0; b < 256; ++b) EXPECT_EQ(cp_to_byte(t[b]), b);
  EXPECT_EQ(cp_to_byte(0x4E00), -1);
}

}  // namespace
}  // namespace troupe
