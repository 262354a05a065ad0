// srlc: compiles an SRL request and prints one of its IRs.
// Exit status: 0 compiled, 1 compile error, 2 usage or I/O error.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "srl/compiler/compiler.h"

namespace {

constexpr int kExitCompileError = 1;
constexpr int kExitUsage = 2;

bool read_all(std::istream& in, std::string& out, std::size_t limit) {
  // Read one byte past the limit so that the compiler can say the request
  // is too large instead of silently truncating it.
  out.clear();
  char buf[65536];
  while (in && out.size() <= limit) {
    in.read(buf, sizeof buf);
    out.append(buf, static_cast<std::size_t>(in.gcount()));
  }
  return !in.bad();
}

std::string filters_table(const srl::filters::Catalog& catalog) {
  std::ostringstream out;
  out << "filter     role       spaces  class / options\n";
  for (const auto& f : catalog.all()) {
    std::string spaces;
    const char* letters = "KUO";
    for (std::size_t i = 0; i < srl::filters::kSpaceKinds; ++i)
      spaces += f.cost[i] ? letters[i] : '-';
    std::string name(f.name), role(srl::filters::to_string(f.role));
    name.resize(std::max<std::size_t>(name.size(), 10), ' ');
    role.resize(std::max<std::size_t>(role.size(), 10), ' ');
    out << name << " " << role << " " << spaces << "     " << f.summary << "\n";
    out << std::string(30, ' ') << "class: " << f.class_meaning << "\n";
    if (!f.class_names.empty()) {
      // What a selector may say instead of a number: `(dns) AAAA>`.
      std::string names;
      for (const auto& c : f.class_names)
        names += (names.empty() ? "" : " ") + std::string(c.name) + "=" + std::to_string(c.value);
      out << std::string(30, ' ') << "class names: " << names << "\n";
    }
    for (const auto& o : f.options) {
      out << std::string(30, ' ') << o.name << "=" << srl::filters::to_string(o.type);
      if (o.required) out << " (required)";
      if (o.default_value)
        out << " (default " << srl::filters::to_json(*o.default_value).dump() << ")";
      out << ": " << o.help << "\n";
    }
  }
  return out.str();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"srlc: compile an SRL request into its filter DAG", "srlc"};
  app.set_version_flag("--version", std::string("srlc ") + SRL_VERSION);
  app.footer(
      "Exit status: 0 compiled, 1 compile error, 2 usage or I/O error.\n"
      "Examples:\n"
      "  srlc -e '(tcp) > (port) 22> (count)'\n"
      "  srlc --emit=dot --dev eth0 examples/ssh-attempts.srl | dot -Tsvg > dag.svg");
  std::string file, expr, emit = "json", output, dump_after, diag_format = "text";
  std::vector<std::string> devices;
  bool list_passes = false, list_filters = false, werror = false;
  app.add_option("file", file, "request file ('-' for standard input)");
  app.add_option("-e,--expr", expr, "request text given on the command line (named <expr>)");
  app.add_option(
         "--emit", emit,
         "what to print: json (the DAG, SRL.md 5), dag (a table), ast, dot, srl (canonical text)")
      ->check(CLI::IsMember({"json", "dag", "ast", "dot", "srl"}));
  app.add_option("--dev", devices, "default device of the implicit rx source (repeatable)")
      ->allow_extra_args(false);
  app.add_option("--dump-after", dump_after,
                 "print the IR as JSON after pass PASS and stop; 'all': one JSON line per pass");
  app.add_option("-o,--output", output, "write to this file instead of standard output");
  app.add_option("--diagnostics-format", diag_format, "text or json (one JSON array on stderr)")
      ->check(CLI::IsMember({"text", "json"}));
  app.add_flag("-W,--Werror", werror, "treat warnings as errors (also -Werror)");
  app.add_flag("--list-passes", list_passes, "list the compiler passes in order and exit");
  app.add_flag("--filters", list_filters,
               "list the filter catalog and exit (JSON with --emit=json)");

  // Compilers spell it -Werror; CLI11 would read that as -W -e rror.
  std::vector<std::string> args;
  for (int i = argc - 1; i >= 1; --i)
    args.emplace_back(std::string(argv[i]) == "-Werror" ? "--Werror" : argv[i]);
  try {
    app.parse(std::move(args));
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : kExitUsage;
  }

  std::ostringstream out;
  auto flush = [&]() -> int {
    if (output.empty()) {
      std::cout << out.str() << std::flush;
      return std::cout ? 0 : kExitUsage;
    }
    std::ofstream f(output, std::ios::binary | std::ios::trunc);
    f << out.str();
    if (!f) {
      std::cerr << "srlc: cannot write " << output << "\n";
      return kExitUsage;
    }
    return 0;
  };

  if (list_passes) {
    for (const auto& p : srl::compiler::passes())
      out << p.name << "\t" << p.summary << "\n";
    return flush();
  }
  if (list_filters) {
    const auto& catalog = srl::filters::Catalog::builtin();
    out << (emit == "json" ? catalog.to_json().dump(2) + "\n" : filters_table(catalog));
    return flush();
  }
  if (!dump_after.empty() && dump_after != "all") {
    bool known = false;
    for (const auto& p : srl::compiler::passes())
      known = known || p.name == dump_after;
    if (!known) {
      std::cerr << "srlc: unknown pass '" << dump_after
                << "' for --dump-after; see --list-passes\n";
      return kExitUsage;
    }
  }
  if (file.empty() == expr.empty() && !(file.empty() && app.count("--expr") > 0)) {
    std::cerr << "srlc: give a request FILE or -e EXPR (exactly one)\n" << app.help();
    return kExitUsage;
  }

  srl::compiler::CompileOptions options;
  options.default_devices = devices;
  std::string text;
  if (app.count("--expr") > 0) {
    text = expr;
    options.file_name = "<expr>";
  } else if (file == "-") {
    options.file_name = "<stdin>";
    if (!read_all(std::cin, text, options.limits.max_input_bytes)) {
      std::cerr << "srlc: cannot read standard input\n";
      return kExitUsage;
    }
  } else {
    options.file_name = file;
    std::ifstream in(file, std::ios::binary);
    if (!in || !read_all(in, text, options.limits.max_input_bytes)) {
      std::cerr << "srlc: cannot read " << file << ": " << std::strerror(errno) << "\n";
      return kExitUsage;
    }
  }

  // Positions in per-pass dumps are shown against the same file name.
  const srl::compiler::SourceFile dump_source(options.file_name, "");
  if (!dump_after.empty()) {
    options.after_pass = [&](std::string_view pass, const srl::compiler::ast::Request& ast,
                             const srl::compiler::RequestDag* dag) {
      if (dump_after != "all" && dump_after != pass) return;
      nlohmann::ordered_json ir =
          dag ? srl::compiler::to_json(*dag, &dump_source) : srl::compiler::ast::to_json(ast);
      if (dump_after == "all")
        out << nlohmann::ordered_json{{"pass", pass}, {"ir", ir}}.dump() << "\n";
      else
        out << ir.dump(2) << "\n";
    };
    if (dump_after != "all") options.stop_after = dump_after;
  }

  auto result = srl::compiler::compile(text, options);
  if (werror) result.diagnostics.promote_warnings();
  if (diag_format == "json") {
    if (!result.diagnostics.all().empty())
      std::cerr << result.diagnostics.to_json(*result.source).dump(2) << "\n";
  } else {
    std::cerr << result.diagnostics.render(*result.source);
  }
  if (!result.ok()) return kExitCompileError;

  if (!dump_after.empty()) return flush();

  const auto& dag = *result.dag;
  if (emit == "json")
    out << srl::compiler::to_json(dag, result.source.get()).dump(2) << "\n";
  else if (emit == "dag")
    out << srl::compiler::to_text(dag, result.source.get());
  else if (emit == "dot")
    out << srl::compiler::to_dot(dag);
  else if (emit == "ast")
    out << srl::compiler::ast::to_json(*result.ast).dump(2) << "\n";
  else if (emit == "srl")
    out << srl::compiler::ast::print(*result.ast);
  return flush();
}
