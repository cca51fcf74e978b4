#include "runtime/text/unicode.hpp"

#include <algorithm>
#include <vector>

#include "runtime/text/unicode_tables.hpp"

namespace troupe::unicode {
namespace ut = unicode_tables;

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

namespace {

// The continuation bytes a lead byte needs and the range its first continuation byte must
// fall in (which rules out overlong forms, surrogates and code points above U+10FFFF).
struct lead_info {
  int need;  // -1: not a lead byte
  uint8_t lo, hi;
};

lead_info lead(uint8_t b) {
  if (b >= 0xC2 && b <= 0xDF) return {1, 0x80, 0xBF};
  if (b == 0xE0) return {2, 0xA0, 0xBF};
  if (b == 0xED) return {2, 0x80, 0x9F};
  if (b >= 0xE1 && b <= 0xEF) return {2, 0x80, 0xBF};
  if (b == 0xF0) return {3, 0x90, 0xBF};
  if (b == 0xF4) return {3, 0x80, 0x8F};
  if (b >= 0xF1 && b <= 0xF3) return {3, 0x80, 0xBF};
  return {-1, 0, 0};
}

void append_replacement(std::string& out) { out.append("\xEF\xBF\xBD"); }

}  // namespace

bool is_valid_utf8(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const auto b = static_cast<uint8_t>(s[i]);
    if (b < 0x80) { ++i; continue; }
    const lead_info l = lead(b);
    if (l.need < 0 || i + static_cast<size_t>(l.need) >= n) return false;
    const auto c1 = static_cast<uint8_t>(s[i + 1]);
    if (c1 < l.lo || c1 > l.hi) return false;
    for (int k = 2; k <= l.need; ++k) {
      const auto c = static_cast<uint8_t>(s[i + k]);
      if (c < 0x80 || c > 0xBF) return false;
    }
    i += 1 + l.need;
  }
  return true;
}

size_t append_utf8_lossy(std::string& out, std::string_view bytes, bool final) {
  size_t i = 0;
  const size_t n = bytes.size();
  while (i < n) {
    const auto b = static_cast<uint8_t>(bytes[i]);
    if (b < 0x80) { out.push_back(static_cast<char>(b)); ++i; continue; }
    const lead_info l = lead(b);
    if (l.need < 0) { append_replacement(out); ++i; continue; }
    size_t j = i + 1;
    bool bad = false;
    for (int k = 0; k < l.need; ++k, ++j) {
      if (j >= n) {
        // A sequence cut short by the end: a later byte may complete it.
        if (!final) return i;
        append_replacement(out);
        return n;
      }
      const auto c = static_cast<uint8_t>(bytes[j]);
      const uint8_t lo = k == 0 ? l.lo : 0x80, hi = k == 0 ? l.hi : 0xBF;
      if (c < lo || c > hi) { bad = true; break; }
    }
    if (bad) {
      // One U+FFFD for the maximal subpart; the offending byte starts afresh.
      append_replacement(out);
      i = j;
      continue;
    }
    out.append(bytes.substr(i, j - i));
    i = j;
  }
  return n;
}

// ---- NFC

namespace {

uint8_t ccc(uint32_t cp) {
  if (cp < 0x300) return 0;
  const ut::ccc_range* end = ut::ccc_ranges + ut::n_ccc_ranges;
  const ut::ccc_range* it =
      std::upper_bound(ut::ccc_ranges, end, cp, [](uint32_t c, const ut::ccc_range& r) { return c < r.first; });
  if (it == ut::ccc_ranges) return 0;
  --it;
  return cp <= it->last ? it->ccc : 0;
}

bool nfc_unstable(uint32_t cp) {
  if (cp < 0x300) return false;
  const ut::cp_range* end = ut::nfc_unstable + ut::n_nfc_unstable;
  const ut::cp_range* it =
      std::upper_bound(ut::nfc_unstable, end, cp, [](uint32_t c, const ut::cp_range& r) { return c < r.first; });
  if (it == ut::nfc_unstable) return false;
  --it;
  return cp <= it->last;
}

constexpr uint32_t hangul_s = 0xAC00, hangul_l = 0x1100, hangul_v = 0x1161, hangul_t = 0x11A7;
constexpr uint32_t hangul_n_l = 19, hangul_n_v = 21, hangul_n_t = 28;
constexpr uint32_t hangul_n_s = hangul_n_l * hangul_n_v * hangul_n_t;

void decompose(uint32_t cp, std::vector<uint32_t>& out) {
  if (cp >= hangul_s && cp < hangul_s + hangul_n_s) {
    const uint32_t s = cp - hangul_s;
    out.push_back(hangul_l + s / (hangul_n_v * hangul_n_t));
    out.push_back(hangul_v + (s % (hangul_n_v * hangul_n_t)) / hangul_n_t);
    if (s % hangul_n_t) out.push_back(hangul_t + s % hangul_n_t);
    return;
  }
  const ut::decomposition* end = ut::decompositions + ut::n_decompositions;
  const ut::decomposition* it = std::lower_bound(
      ut::decompositions, end, cp, [](const ut::decomposition& d, uint32_t c) { return d.cp < c; });
  if (it == end || it->cp != cp) {
    out.push_back(cp);
    return;
  }
  decompose(it->first, out);
  if (it->second) decompose(it->second, out);
}

uint32_t compose(uint32_t a, uint32_t b) {
  if (a >= hangul_l && a < hangul_l + hangul_n_l && b >= hangul_v && b < hangul_v + hangul_n_v)
    return hangul_s + ((a - hangul_l) * hangul_n_v + (b - hangul_v)) * hangul_n_t;
  if (a >= hangul_s && a < hangul_s + hangul_n_s && (a - hangul_s) % hangul_n_t == 0 &&
      b > hangul_t && b < hangul_t + hangul_n_t)
    return a + (b - hangul_t);
  const ut::composition* end = ut::compositions + ut::n_compositions;
  const ut::composition* it = std::lower_bound(
      ut::compositions, end, std::pair{a, b}, [](const ut::composition& c, std::pair<uint32_t, uint32_t> k) {
        return c.first < k.first || (c.first == k.first && c.second < k.second);
      });
  if (it != end && it->first == a && it->second == b) return it->composite;
  return 0;
}

}  // namespace

std::string nfc(std::string_view s) {
  size_t i = 0;
  bool stable = true;
  while (i < s.size()) {
    if (static_cast<uint8_t>(s[i]) < 0x80) { ++i; continue; }
    if (nfc_unstable(next_cp(s, i))) { stable = false; break; }
  }
  if (stable) return std::string(s);

  // Canonical decomposition, canonical ordering, then canonical composition (UAX #15).
  std::vector<uint32_t> d;
  d.reserve(s.size());
  for (i = 0; i < s.size();) decompose(next_cp(s, i), d);
  for (size_t k = 1; k < d.size(); ++k) {
    const uint8_t c = ccc(d[k]);
    if (c == 0) continue;
    for (size_t m = k; m > 0 && ccc(d[m - 1]) > c; --m) std::swap(d[m - 1], d[m]);
  }
  std::vector<uint32_t> out;
  out.reserve(d.size());
  ptrdiff_t starter = -1;
  int last_ccc = -1;  // of the last character kept since the starter; -1: none
  for (uint32_t cp : d) {
    const int c = ccc(cp);
    const bool blocked = last_ccc != -1 && (last_ccc == 0 || last_ccc >= c);
    if (starter >= 0 && !blocked) {
      if (uint32_t comp = compose(out[starter], cp)) {
        out[starter] = comp;
        continue;
      }
    }
    if (c == 0) {
      starter = static_cast<ptrdiff_t>(out.size());
      last_ccc = -1;
    } else {
      last_ccc = c;
    }
    out.push_back(cp);
  }
  std::string r;
  r.reserve(s.size());
  for (uint32_t cp : out) append_utf8(r, cp);
  return r;
}

// ---- GPT-2's byte alphabet

const std::array<uint32_t, 256>& byte_to_cp() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      t[b] = printable ? b : next++;
    }
    return t;
  }();
  return table;
}

int cp_to_byte(uint32_t cp) {
  static const std::array<int16_t, 324> inverse = [] {
    std::array<int16_t, 324> t{};
    t.fill(-1);
    const auto& fwd = byte_to_cp();
    for (int b = 0; b < 256; ++b) t[fwd[b]] = static_cast<int16_t>(b);
    return t;
  }();
  return cp < inverse.size() ? inverse[cp] : -1;
}

}  // namespace troupe::unicode
