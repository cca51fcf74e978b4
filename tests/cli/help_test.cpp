// Proves that every troupe command explains itself and that README.md and the binary agree, by
// running the built binary: `--help` of every command it has (found through the Subcommands of
// each help) lists options that each say what they do; README.md's option tables (| command |
// option | default | what it sets |) hold a row for every option of every command, with the
// default, the accepted values and the environment variable that the help shows, and no row
// for an option a command does not have; its commands table names every command, and only
// options they have; `--version` says what it must; and a wrong option or value exits 2 with a
// message that names the option and what it accepts.
//
// The README tables are the test's data: an option added to a command needs a row, and the
// failure says which command, which option and what row to add.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "kernels/cpu/cpu_features.hpp"
#include "tests/cli/run_command.hpp"

namespace {

namespace fs = std::filesystem;

using troupe::testing::run_command;
using troupe::testing::run_result;

// `troupe ARGS`, as `command` names it ("troupe bench engine --help").
run_result troupe(const std::string& command_line) {
  return run_command("timeout 60 '" + troupe::testing::troupe_binary() + "'" + command_line.substr(6));
}

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t");
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(" \t") - a + 1);
}

std::vector<std::string> words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// The first capture of `re` in `s`, or "".
std::string find(const std::string& s, const std::string& re) {
  std::smatch m;
  return std::regex_search(s, m, std::regex(re)) ? m[1].str() : "";
}

// ---- the binary's help

struct help_option {
  std::vector<std::string> names;  // {"-o", "--output"}, or a positional's {"FILE"}
  std::string value;               // the value's name ("PATH"); "" for a flag
  std::string text;                // what follows: the description, then [notes]
  std::string note(const std::string& what) const { return find(text, "\\[" + what + ": ([^\\]]*)\\]"); }
};

struct help_page {
  run_result result;
  std::vector<help_option> options;
  std::vector<std::string> subcommands;
  const help_option* option(const std::string& name) const {
    for (const help_option& o : options)
      for (const std::string& n : o.names)
        if (n == name) return &o;
    return nullptr;
  }
};

// Reads a help page: sections ("Model:", "Subcommands:") of entries, each an indented line with
// continuation lines indented further.
help_page parse_help(const run_result& r) {
  help_page page;
  page.result = r;
  std::string section;
  std::istringstream in(r.out);
  help_option* last = nullptr;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    if (line[0] != ' ') {
      section = line.back() == ':' ? line.substr(0, line.size() - 1) : "";
      last = nullptr;
      continue;
    }
    if (line.size() > 2 && line[2] == ' ') {  // a continuation
      if (last) last->text += " " + trim(line);
      continue;
    }
    last = nullptr;
    const std::vector<std::string> w = words(line);
    if (w.empty() || section == "Environment") continue;
    if (section == "Subcommands") {
      page.subcommands.push_back(w[0]);
      continue;
    }
    help_option o;
    size_t i = 0;
    if (section == "Positionals") {
      o.names.push_back(w[i++]);
    } else {
      for (; i < w.size() && w[i][0] == '-'; ++i) o.names.push_back(w[i].back() == ',' ? w[i].substr(0, w[i].size() - 1) : w[i]);
    }
    if (o.names.empty()) continue;
    std::string rest = line.substr(line.find(o.names.back()) + o.names.back().size());
    if (section != "Positionals" && rest.size() > 1 && rest[0] == ' ' && rest[1] != ' ') {  // " PATH    what"
      const size_t end = rest.find("  ", 1);
      o.value = rest.substr(1, end == std::string::npos ? std::string::npos : end - 1);
      rest = end == std::string::npos ? "" : rest.substr(end);
    }
    o.text = trim(rest);
    page.options.push_back(std::move(o));
    last = &page.options.back();
  }
  return page;
}

// Every command the binary has, from `troupe --help` down, with its help.
const std::map<std::string, help_page>& helps() {
  static const std::map<std::string, help_page> pages = [] {
    // Options read the environment (TROUPE_MODEL changes a default): the help is read without it.
    for (const char* v : {"TROUPE_MODEL", "TROUPE_API_KEY"}) ::unsetenv(v);
    std::map<std::string, help_page> out;
    std::vector<std::string> todo = {"troupe"};
    while (!todo.empty()) {
      const std::string cmd = todo.back();
      todo.pop_back();
      help_page p = parse_help(troupe(cmd + " --help"));
      for (const std::string& s : p.subcommands) todo.push_back(cmd + " " + s);
      out.emplace(cmd, std::move(p));
    }
    return out;
  }();
  return pages;
}

std::string known_commands() {
  std::string s;
  for (const auto& [c, p] : helps()) s += (s.empty() ? "" : ", ") + c;
  return s;
}

// ---- README.md's tables

struct readme_row {
  int line = 0;
  std::vector<std::string> cells;
};

// Markdown table cells, split at unescaped '|'; "\|" becomes '|'.
std::vector<std::string> cells_of(const std::string& line) {
  std::vector<std::string> cells;
  std::string cur;
  for (size_t i = 1; i < line.size(); ++i) {
    if (line[i] == '\\' && i + 1 < line.size() && line[i + 1] == '|') {
      cur += '|';
      ++i;
    } else if (line[i] == '|') {
      cells.push_back(trim(cur));
      cur.clear();
    } else {
      cur += line[i];
    }
  }
  return cells;
}

std::vector<std::string> code_spans(const std::string& cell) {
  std::vector<std::string> out;
  static const std::regex span("`([^`]*)`");
  for (std::sregex_iterator it(cell.begin(), cell.end(), span), end; it != end; ++it) out.push_back((*it)[1].str());
  return out;
}

// The rows of every README table whose header starts with these cells.
std::vector<readme_row> readme_tables(const std::string& first, const std::string& second) {
  std::ifstream in(troupe::testing::source_dir() + "/README.md");
  std::vector<readme_row> rows;
  bool inside = false;
  int n = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    if (line.empty() || line[0] != '|') {
      inside = false;
      continue;
    }
    std::vector<std::string> cells = cells_of(line);
    if (!inside) {
      inside = cells.size() >= 2 && cells[0] == first && cells[1] == second;
      continue;
    }
    if (line.starts_with("|---") || line.starts_with("| ---")) continue;
    rows.push_back({n, std::move(cells)});
  }
  return rows;
}

// An option cell's names: `--model PATH` -> {--model}; `-o, --output FILE` -> {-o, --output};
// a positional `FILE` -> {FILE}.
std::vector<std::string> option_names(const std::string& cell) {
  const std::vector<std::string> spans = code_spans(cell);
  if (spans.empty()) return {};
  std::vector<std::string> w = words(spans[0]), names;
  for (const std::string& x : w) {
    if (x[0] != '-') break;
    names.push_back(x.back() == ',' ? x.substr(0, x.size() - 1) : x);
  }
  if (names.empty() && !w.empty()) names.push_back(w[0]);
  return names;
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

// A default under the source tree (the built-in model) reads as the README writes it, relative.
std::string as_in_readme(std::string def) {
  const std::string src = fs::weakly_canonical(troupe::testing::source_dir()).string() + "/";
  if (def.starts_with(src)) def = def.substr(src.size());
  return def;
}

// An option's description without its [notes].
std::string description_of(const help_option& o) {
  return trim(std::regex_replace(o.text, std::regex(R"( *\[[^\]]*\])"), ""));
}

// ---- tests

TEST(help, every_command_answers_help_with_its_own_options) {
  ASSERT_GE(helps().size(), 11u) << "commands found: " << known_commands();
  for (const auto& [cmd, page] : helps()) {
    SCOPED_TRACE(cmd + " --help");
    EXPECT_EQ(page.result.rc, 0) << page.result.err;
    EXPECT_EQ(page.result.err, "");
    EXPECT_NE(page.result.out.find("Usage: " + cmd + " "), std::string::npos) << page.result.out;
    ASSERT_NE(page.option("--help"), nullptr) << page.result.out;
    for (const help_option& o : page.options)
      EXPECT_GE(words(description_of(o)).size(), 2u) << o.names.back() << " does not say what it does: " << o.text;
  }
  // The commands that take options list them (this was the bug: serve printed only --help).
  for (const std::string cmd : {"troupe serve", "troupe node", "troupe generate", "troupe bench engine",
                                "troupe bench serve", "troupe config migrate", "troupe actors"})
    EXPECT_GE(helps().at(cmd).options.size(), 3u) << cmd << " --help:\n" << helps().at(cmd).result.out;
}

TEST(help, every_option_of_every_command_has_a_readme_row_that_agrees) {
  // (command, option) -> its README row.
  std::map<std::pair<std::string, std::string>, readme_row> rows;
  for (const readme_row& r : readme_tables("command", "option")) {
    ASSERT_GE(r.cells.size(), 4u) << "README.md:" << r.line << ": a row needs | command | option | default | what |";
    const std::vector<std::string> names = option_names(r.cells[1]);
    ASSERT_FALSE(names.empty()) << "README.md:" << r.line << ": no `--option` in the option cell";
    for (const std::string& cmd : code_spans(r.cells[0])) {
      auto page = helps().find(cmd);
      if (page == helps().end()) {
        ADD_FAILURE() << "README.md:" << r.line << ": `" << cmd << "` is not a troupe command (they are "
                      << known_commands() << ")";
        continue;
      }
      const help_option* o = page->second.option(names.back());
      if (!o) {
        ADD_FAILURE() << "README.md:" << r.line << ": `" << cmd << "` has no option " << names.back()
                      << " (see `" << cmd << " --help`); remove it from the row or add it to the command";
        continue;
      }
      EXPECT_EQ(joined(o->names), joined(names))
          << "README.md:" << r.line << ": `" << cmd << "` spells this option " << joined(o->names);
      EXPECT_TRUE(rows.emplace(std::make_pair(cmd, names.back()), r).second)
          << "README.md:" << r.line << ": a second row for `" << cmd << " " << names.back() << "`";
    }
  }
  ASSERT_FALSE(rows.empty()) << "README.md has no table headed | command | option | default | what it sets |";

  for (const auto& [cmd, page] : helps()) {
    for (const help_option& o : page.options) {
      const std::string& name = o.names.back();
      if (name == "--help") continue;
      auto it = rows.find({cmd, name});
      if (it == rows.end()) {
        ADD_FAILURE() << "`" << cmd << " " << name << "` is in `" << cmd
                      << " --help` but in no row of README.md's option tables; add a row:\n| `" << cmd << "` | `"
                      << joined(o.names) << (o.value.empty() ? "" : " " + o.value) << "` | "
                      << as_in_readme(o.note("default")) << " | " << description_of(o) << " |";
        continue;
      }
      const readme_row& r = it->second;
      std::string row;
      for (const std::string& c : r.cells) row += c + " | ";
      if (const std::string def = as_in_readme(o.note("default")); !def.empty()) {
        EXPECT_NE(r.cells[2].find(def), std::string::npos)
            << "README.md:" << r.line << ": `" << cmd << " " << name << "` defaults to " << def
            << ", which its default cell does not say: " << r.cells[2];
      }
      std::istringstream values(o.note("values"));
      for (std::string x; std::getline(values, x, ',');) {
        EXPECT_NE(row.find(trim(x)), std::string::npos) << "README.md:" << r.line << ": `" << cmd << " " << name
                                                        << "` accepts " << trim(x) << ", which its row does not name";
      }
      if (const std::string env = o.note("env"); !env.empty()) {
        EXPECT_NE(row.find(env), std::string::npos) << "README.md:" << r.line << ": `" << cmd << " " << name
                                                    << "` is also set by $" << env << ", which its row does not name";
      }
    }
  }
}

TEST(help, the_commands_table_names_every_command_and_only_options_they_have) {
  std::set<std::string> listed;
  const std::vector<readme_row> rows = readme_tables("command", "what it does");
  ASSERT_FALSE(rows.empty()) << "README.md has no table headed | command | what it does |";
  for (const readme_row& r : rows) {
    const std::vector<std::string> spans = code_spans(r.cells[0]);
    ASSERT_FALSE(spans.empty()) << "README.md:" << r.line;
    // The command: its leading lower-case words ("troupe config validate FILE ..." -> 3 words).
    std::string cmd;
    const std::vector<std::string> w = words(spans[0]);
    for (const std::string& x : w) {
      if (!std::regex_match(x, std::regex("[a-z]+"))) break;
      cmd += (cmd.empty() ? "" : " ") + x;
    }
    auto page = helps().find(cmd);
    if (page == helps().end()) {
      ADD_FAILURE() << "README.md:" << r.line << ": `" << cmd << "` is not a troupe command (they are "
                    << known_commands() << ")";
      continue;
    }
    listed.insert(cmd);
    static const std::regex option("(^|[\\s\\[|])(--?[a-zA-Z][a-zA-Z0-9-]*)");
    for (std::sregex_iterator it(spans[0].begin(), spans[0].end(), option), end; it != end; ++it)
      EXPECT_NE(page->second.option((*it)[2].str()), nullptr)
          << "README.md:" << r.line << ": `" << cmd << "` has no option " << (*it)[2].str();
  }
  for (const auto& [cmd, page] : helps()) {
    if (page.subcommands.empty()) {
      EXPECT_TRUE(listed.count(cmd)) << "`" << cmd << "` is a command but no row of README.md's commands table shows it";
    }
  }
}

TEST(help, version_names_the_build_and_what_this_machine_offers) {
  const run_result r = troupe("troupe --version");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(std::regex_search(r.out, std::regex("^troupe [0-9]+\\.[0-9]+\\.[0-9]+\n"))) << r.out;
  const std::string commit = find(r.out, "\ncommit +([^\n]*)");
  const std::string src = troupe::testing::source_dir();
  const run_result top = run_command("git -C '" + src + "' rev-parse --show-toplevel");
  if (top.rc == 0 && fs::equivalent(trim(top.out.substr(0, top.out.find('\n'))), src)) {
    // Built from this checkout: a commit of its history (HEAD, unless commits came after the build).
    const std::string hash = find(commit, "^([0-9a-f]{40})( with uncommitted changes)?$");
    ASSERT_FALSE(hash.empty()) << r.out;
    EXPECT_EQ(run_command("git -C '" + src + "' merge-base --is-ancestor " + hash + " HEAD").rc, 0)
        << hash << " is not in the history of " << src;
  } else {
    EXPECT_EQ(commit, "unknown: built from a source tree that is not a git checkout") << r.out;
  }
  EXPECT_FALSE(find(r.out, "\nbuild +([^\n]+)").empty()) << r.out;
  EXPECT_EQ(find(r.out, "\nCPU kernels +([^ \n]+)"), troupe::cpu::isa_name(troupe::cpu::best_isa())) << r.out;
#if defined(TROUPE_HAVE_CUDA)
  EXPECT_TRUE(find(r.out, "\nCUDA +([^\n]+)").starts_with("compiled in")) << r.out;
#else
  EXPECT_TRUE(find(r.out, "\nCUDA +([^\n]+)").starts_with("not compiled in")) << r.out;
#endif
  EXPECT_FALSE(find(r.out, "\nGPUs +([^\n]+)").empty()) << r.out;
}

// A wrong command line: exit status 2, nothing on stdout, and stderr naming the option and what
// it accepts (or the nearest name), before any work starts.
TEST(help, a_wrong_option_or_value_exits_2_naming_the_option_and_what_it_accepts) {
  struct wrong {
    const char* args;
    std::vector<const char*> says;
  };
  const wrong cases[] = {
      {"troupe serve --port 70000", {"--port: must be 0 to 65535, not 70000"}},
      {"troupe serve --port eighty", {"--port", "not eighty"}},
      {"troupe serve --prot 8000", {"unknown option --prot; did you mean --port?"}},
      {"troupe serve --workers 0", {"--workers: must be at least 1, not 0"}},
      {"troupe serve --workers 1.5", {"--workers: must be a whole number, not 1.5"}},
      {"troupe serve --kv-cache-memory lots", {"--kv-cache-memory: must be a fraction", "16GiB", "not lots"}},
      {"troupe serve --kv-cache-memory 1", {"--kv-cache-memory", "not 1"}},  // 1 byte is never meant
      {"troupe serve --device tpu", {"--device: must be cpu, cuda or cuda:N, not tpu"}},
      {"troupe serve --model /nonexistent/model", {"--model: /nonexistent/model: no such file or directory"}},
      {"troupe serve --model nobody/nothing", {"--model: nobody/nothing is not in the local Hugging Face cache"}},
      {"troupe serve stray", {"unexpected argument stray"}},
      {"troupe node --role boss", {"--role: must be control or worker, not boss", "--role ROLE"}},
      {"troupe node --port 8000", {"--role is required"}},
      {"troupe node --role control", {"--role control needs --listen PORT"}},
      {"troupe node --role worker --join localhost", {"--join: must be HOST:PORT"}},
      {"troupe node --role worker --join localhost:9", {"--role worker needs --model MODEL"}},
      {"troupe generate --prompt hi --temperature -1", {"--temperature: must be 0 to 100, not -1"}},
      {"troupe generate --prompt hi --top-p 0", {"--top-p: must be above 0, at most 1, not 0"}},
      {"troupe generate --prompt hi --seed -3", {"--seed: must be at least 0, not -3"}},
      {"troupe generate --max-tokens 4", {"--prompt is required"}},
      {"troupe bench engine --workload mixd", {"--workload: must be shared-prefix or mixed, not mixd", "did you mean mixed?"}},
      {"troupe bench engine --dtype f8", {"--dtype: must be bf16, f16, f32, q8_0, q4_0, q4_k, q5_k or q6_k, not f8"}},
      {"troupe bench engine --batches 1,0", {"--batches: must be at least 1, not 0"}},
      {"troupe bench serve --duration 0", {"--duration: must be above 0, not 0"}},
      {"troupe bench frobnicate", {"unknown command frobnicate", "engine"}},
      {"troupe config migrate --avg-input-tokens none x.yaml", {"--avg-input-tokens", "not none"}},
      {"troupe config valdate x.yaml", {"unknown command valdate; did you mean validate?"}},
      {"troupe actors --url", {"--url"}},
      {"troupe sevre", {"unknown command sevre; did you mean serve?"}},
      {"troupe --verison", {"unknown option --verison"}},
      {"troupe", {"name a command", "serve"}},
  };
  for (const wrong& w : cases) {
    const run_result r = troupe(w.args);
    EXPECT_EQ(r.rc, 2) << w.args << "\n" << r.err;
    EXPECT_EQ(r.out, "") << w.args;
    for (const char* s : w.says) EXPECT_NE(r.err.find(s), std::string::npos) << w.args << ": expected " << s << " in\n" << r.err;
    EXPECT_NE(r.err.find("--help"), std::string::npos) << w.args << ": the message should say where the options are\n"
                                                       << r.err;
  }
}

}  // namespace
