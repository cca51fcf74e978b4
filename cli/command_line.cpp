#include "cli/command_line.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <regex>
#include <sstream>

#include <fmt/format.h>

#include "config/map_reader.hpp"
#include "config/readers.hpp"
#include "kernels/cuda/device_name.hpp"

namespace troupe::cli {

namespace {

constexpr size_t name_width = 30;  // the column where descriptions start
constexpr size_t line_width = 100;

std::optional<double> number(const std::string& v) {
  char* end = nullptr;
  const double d = std::strtod(v.c_str(), &end);
  if (v.empty() || end != v.c_str() + v.size() || !std::isfinite(d)) return std::nullopt;
  return d;
}

// "a,b" -> "a, b".
std::string spaced_commas(std::string s) {
  for (size_t p = 0; (p = s.find(',', p)) != std::string::npos; p += 2) s.insert(p + 1, " ");
  return s;
}

// The descriptions of an option's validators, in the order they were added. CLI11 2.1 reaches
// an option's validators only through a non-const accessor, by index until it throws.
std::vector<std::string> validator_descriptions(const CLI::Option* opt) {
  std::vector<std::string> out;
  auto* o = const_cast<CLI::Option*>(opt);
  for (int i = 0;; ++i) {
    try {
      if (std::string d = o->get_validator(i)->get_description(); !d.empty()) out.push_back(std::move(d));
    } catch (const CLI::OptionNotFound&) {
      return out;
    }
  }
}

// What a validator accepts, as --help shows it: ours say it in words; CLI::IsMember's "{a,b}"
// becomes "values: a, b".
std::string accepted(const std::string& description) {
  const std::string& d = description;
  if (d.size() > 2 && d.front() == '{' && d.back() == '}') return "values: " + spaced_commas(d.substr(1, d.size() - 2));
  return d;
}

// `text` wrapped at line_width, its lines after the first indented by `indent` (the first one
// starts there), ending in a newline.
std::string wrap(const std::string& text, size_t indent) {
  std::string out;
  size_t col = indent;
  std::istringstream words(text);
  for (std::string w; words >> w;) {
    if (col > indent && col + 1 + w.size() > line_width) {
      out += "\n" + std::string(indent, ' ');
      col = indent;
    } else if (col > indent) {
      out += ' ';
      ++col;
    }
    out += w;
    col += w.size();
  }
  return out + "\n";
}

// One help entry: the left column, then the text from column name_width on (on the next line
// when the left column is wider).
std::string layout(const std::string& left, const std::string& text) {
  std::string out = "  " + left;
  if (text.empty()) return out + "\n";
  if (out.size() + 2 > name_width) out += "\n" + std::string(name_width, ' ');
  else out += std::string(name_width - out.size(), ' ');
  return out + wrap(text, name_width);
}

// troupe's help layout: a value's name beside the option, and what it accepts, its default and
// its environment variable in brackets after the description.
class help_formatter : public CLI::Formatter {
 public:
  help_formatter() { column_width(name_width); }

  std::string make_option(const CLI::Option* opt, bool positional) const override {
    return layout(make_option_name(opt, positional) + make_option_opts(opt), make_option_desc(opt));
  }

  std::string make_option_name(const CLI::Option* opt, bool positional) const override {
    if (positional) return opt->get_name(true, false);
    return spaced_commas(opt->get_name(false, true));  // "-o, --output"
  }

  // The value's name ("PORT"), without the validators that CLI11 appends to it.
  std::string make_option_opts(const CLI::Option* opt) const override {
    if (opt->get_type_size() == 0 || opt->get_positional()) return "";
    std::string type = opt->get_type_name();
    std::string suffix;
    for (const std::string& d : validator_descriptions(opt)) suffix += ":" + d;
    if (!suffix.empty() && type.size() >= suffix.size() && type.ends_with(suffix))
      type.resize(type.size() - suffix.size());
    if (opt->get_expected_max() == CLI::detail::expected_max_vector_size) type += " ...";
    return type.empty() ? "" : " " + type;
  }

  std::string make_option_desc(const CLI::Option* opt) const override {
    std::string d = opt->get_description();
    for (const std::string& v : validator_descriptions(opt)) d += " [" + accepted(v) + "]";
    if (opt->get_type_size() != 0 && !opt->get_default_str().empty()) {
      std::string def = opt->get_default_str();
      if (def.size() >= 2 && def.front() == '[' && def.back() == ']') def = def.substr(1, def.size() - 2);  // a list
      if (!def.empty()) d += " [default: " + def + "]";
    }
    if (!opt->get_envname().empty()) d += " [env: " + opt->get_envname() + "]";
    if (opt->get_required()) d += " [required]";
    return d;
  }

  // Groups are separated by one blank line (CLI11 puts two).
  std::string make_group(std::string group, bool positional, std::vector<const CLI::Option*> opts) const override {
    std::string out = group + ":\n";
    for (const CLI::Option* o : opts) out += make_option(o, positional);
    return out;
  }
  std::string make_positionals(const CLI::App* app) const override {
    std::string p = CLI::Formatter::make_positionals(app);
    return p.empty() ? p : p + "\n";
  }
  std::string make_usage(const CLI::App* app, std::string name) const override {
    return CLI::Formatter::make_usage(app, std::move(name)) + "\n";
  }
  std::string make_description(const CLI::App* app) const override {
    const std::string d = app->get_description();
    return d.empty() ? d : wrap(d, 0);
  }

  std::string make_subcommand(const CLI::App* sub) const override {
    return layout(sub->get_display_name(), sub->get_description());
  }
};

// The command that was being parsed: the deepest subcommand selected so far.
const CLI::App* selected(const CLI::App& app) {
  const CLI::App* a = &app;
  while (!a->get_subcommands().empty()) a = a->get_subcommands().front();
  return a;
}

// "troupe bench engine": the names from the root to `a`.
std::string command_name(const CLI::App* a) {
  std::string name;
  for (; a; a = a->get_parent()) name = a->get_name() + (name.empty() ? "" : " " + name);
  return name;
}

// The options of `cmd` and of the commands above it, nearest first, with their names.
const CLI::Option* find_option(const CLI::App* cmd, const std::string& name) {
  for (; cmd; cmd = cmd->get_parent())
    if (const CLI::Option* o = cmd->get_option_no_throw(name)) return o;
  return nullptr;
}

std::vector<std::string> long_names(const CLI::App* cmd) {
  std::vector<std::string> out;
  for (const CLI::Option* o : cmd->get_options())
    for (const std::string& n : o->get_lnames()) out.push_back("--" + n);
  return out;
}

// Whether `cmd` is made of subcommands and none was given.
bool awaits_subcommand(const CLI::App* cmd) {
  return !cmd->get_subcommands({}).empty() && cmd->get_subcommands().empty();
}

// Words the parser could not place: the selected command's, else its parents'.
std::vector<std::string> leftovers(const CLI::App* cmd) {
  for (; cmd; cmd = cmd->get_parent())
    if (auto words = cmd->remaining(); !words.empty()) return words;
  return {};
}

// CLI11's message for an error, said in troupe's words where CLI11's are vague.
std::string describe(const CLI::App& app, const CLI::ParseError& e) {
  const CLI::App* cmd = selected(app);
  const std::vector<std::string> words = leftovers(cmd);
  const bool extras = dynamic_cast<const CLI::ExtrasError*>(&e) != nullptr;
  const bool no_subcommand = dynamic_cast<const CLI::RequiredError*>(&e) != nullptr && awaits_subcommand(cmd);
  if ((extras || no_subcommand) && !words.empty()) {
    const std::string& w = words.front();
    if (w.starts_with("-")) {
      std::string msg = "unknown option " + w;
      if (std::string s = config::did_you_mean(w, long_names(cmd)); !s.empty()) msg += "; did you mean " + s + "?";
      return msg;
    }
    std::vector<std::string> names;
    for (const CLI::App* sub : cmd->get_subcommands({})) names.push_back(sub->get_name());
    if (names.empty()) return "unexpected argument " + w;
    std::string msg = "unknown command " + w;
    if (std::string s = config::did_you_mean(w, names); !s.empty()) msg += "; did you mean " + s + "?";
    return msg;
  }
  if (no_subcommand) return "name a command";
  // "Could not convert: --workers = 1.5": the validators let every number through; integers
  // are checked here.
  static const std::regex conversion(R"(Could not convert: (\S+) = (.*))");
  std::smatch m;
  const std::string what = e.what();
  if (dynamic_cast<const CLI::ConversionError*>(&e) && std::regex_match(what, m, conversion)) {
    const auto d = number(m[2].str());
    if (d && std::floor(*d) != *d) return fmt::format("{}: must be a whole number, not {}", m[1].str(), m[2].str());
    return fmt::format("{}: cannot use {}: it is out of range or not a number", m[1].str(), m[2].str());
  }
  return what;
}

void report(const CLI::App& app, const std::string& message) {
  const CLI::App* cmd = selected(app);
  const std::string name = command_name(cmd);
  std::string text = name + ": " + message + "\n";
  // The help line of each option the message names, so that what it accepts is in view.
  static const std::regex option_word(R"((--?[A-Za-z][A-Za-z0-9-]*|\b[A-Z][A-Z_]+\b))");
  std::vector<const CLI::Option*> shown;
  for (std::sregex_iterator it(message.begin(), message.end(), option_word), end; it != end; ++it) {
    const std::string word = it->str();
    if (const CLI::Option* o = find_option(cmd, word)) {
      if (std::find(shown.begin(), shown.end(), o) != shown.end()) continue;
      shown.push_back(o);
      text += help_formatter().make_option(o, o->get_positional());
    }
  }
  // A command made of subcommands, given none: its help says what they are.
  if (awaits_subcommand(cmd)) text += "\n" + cmd->help();
  else text += fmt::format("Run '{} --help' for every option.\n", name);
  std::fputs(text.c_str(), stderr);
}

// A validator from a test of the value (empty: fine) and the description --help shows.
CLI::Validator validator(std::function<std::string(const std::string&)> check, std::string description) {
  return CLI::Validator([check = std::move(check)](std::string& v) { return check(v); }, std::move(description));
}

// "1", "0.5", "65535": numbers as a user writes them.
std::string show(double d) { return fmt::format("{}", d); }

CLI::Validator numeric(std::function<bool(double)> ok, const std::string& accepts) {
  return validator(
      [ok = std::move(ok), accepts](const std::string& v) -> std::string {
        const auto d = number(v);
        if (d && ok(*d)) return "";
        return d ? fmt::format("must be {}, not {}", accepts, v) : fmt::format("must be a number ({}), not {}", accepts, v);
      },
      accepts);
}

}  // namespace

void setup(CLI::App& app) {
  app.formatter(std::make_shared<help_formatter>());
  app.option_defaults()->always_capture_default();
  app.set_help_flag("-h,--help", "print this help and exit");
}

std::optional<int> parse(CLI::App& app, const std::vector<std::string>& args) {
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 takes words from the back
  try {
    app.parse(reversed);
    return std::nullopt;
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);  // --help, --version
    report(app, describe(app, e));
    return exit_usage;
  }
}

int usage_error(const CLI::App& app, const std::string& message) {
  report(app, message);
  return exit_usage;
}

void add_environment(CLI::App& app, const std::string& name, const std::string& what) {
  std::string footer = app.get_footer();
  if (footer.empty()) footer = "Environment:\n";
  app.footer(footer + layout(name, what));
}

void add_kernel_environment(CLI::App& app) {
  add_environment(app, "TROUPE_ISA",
                  "generic, avx2 or avx512 (without its BF16 and VNNI extensions): use a lower CPU kernel set "
                  "than this CPU allows (troupe --version names the one chosen)");
  add_environment(app, "TROUPE_PRECISION",
                  "fast (default: activations rounded to bf16 or int8 as the weights' fast kernels read them) "
                  "or f32 (the reference path); the accuracy contract is in the README");
}

void add_hf_cache_environment(CLI::App& app) {
  add_environment(app, "HF_HUB_CACHE, HF_HOME",
                  "the local Hugging Face cache where checkpoints named by repository are looked up "
                  "(default: ~/.cache/huggingface/hub)");
}

CLI::Validator one_of(std::vector<std::string> values) {
  std::string list;
  for (size_t i = 0; i < values.size(); ++i) list += (i ? ", " : "") + values[i];
  std::string either;
  for (size_t i = 0; i < values.size(); ++i)
    either += (i == 0 ? "" : i + 1 == values.size() ? " or " : ", ") + values[i];
  return validator(
      [values, either](const std::string& v) -> std::string {
        if (std::find(values.begin(), values.end(), v) != values.end()) return "";
        std::string msg = fmt::format("must be {}, not {}", either, v);
        if (std::string s = config::did_you_mean(v, values); !s.empty()) msg += fmt::format(" (did you mean {}?)", s);
        return msg;
      },
      "values: " + list);
}

CLI::Validator at_least(double min) {
  return numeric([min](double d) { return d >= min; }, "at least " + show(min));
}

CLI::Validator above(double min) {
  return numeric([min](double d) { return d > min; }, "above " + show(min));
}

CLI::Validator between(double lo, double hi) {
  return numeric([lo, hi](double d) { return d >= lo && d <= hi; }, show(lo) + " to " + show(hi));
}

CLI::Validator above_up_to(double lo, double hi) {
  return numeric([lo, hi](double d) { return d > lo && d <= hi; },
                 fmt::format("above {}, at most {}", show(lo), show(hi)));
}

CLI::Validator device_name() {
  return validator(
      [](const std::string& v) -> std::string {
        return cuda::device_index(v).ok() ? "" : "must be cpu, cuda or cuda:N, not " + v;
      },
      "values: cpu, cuda, cuda:N");
}

CLI::Validator host_port() {
  return validator(
      [](const std::string& v) -> std::string {
        const size_t colon = v.rfind(':');
        const auto port = colon == std::string::npos ? std::nullopt : number(v.substr(colon + 1));
        if (colon == 0 || !port || *port < 1 || *port > 65535 || std::floor(*port) != *port)
          return "must be HOST:PORT with a port from 1 to 65535, not " + v;
        return "";
      },
      "");
}

CLI::Validator memory_size() {
  return validator(
      [](const std::string& v) -> std::string {
        if (config::parse_kv_cache_memory(v)) return "";
        return fmt::format("must be {}, not {}", config::kv_cache_memory_forms, v);
      },
      "a fraction such as 0.5 or 90%, or a size such as 2GiB");
}

CLI::Validator existing_path() {
  return validator(
      [](const std::string& v) -> std::string {
        std::error_code ec;
        if (std::filesystem::exists(v, ec)) return "";
        return v + " does not exist";
      },
      "");
}

}  // namespace troupe::cli
