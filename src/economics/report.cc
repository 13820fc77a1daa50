// Files of a `bench reuse` / `economics` report, and the gnuplot plots.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "economics/reuse_bench.h"

namespace kvmart::economics {
namespace {

namespace fs = std::filesystem;

Status WriteText(const fs::path& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  f.close();
  if (!f) return Status::IOError(path.string() + ": write failed");
  return Status::Ok();
}

bool OnPath(const std::string& exe) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return false;
  std::stringstream ss(path);
  std::string dir;
  std::error_code ec;
  while (std::getline(ss, dir, ':')) {
    if (!dir.empty() && fs::exists(fs::path(dir) / exe, ec)) return true;
  }
  return false;
}

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Runs gnuplot on `script` in `dir`; its messages go to dir/gnuplot.log.
Status RunGnuplot(const fs::path& dir, const std::string& script) {
  if (!OnPath("gnuplot")) {
    return Status::FailedPrecondition("gnuplot not found on PATH (Debian: gnuplot-nox); data and " + script +
                                      " were written to " + dir.string());
  }
  const std::string cmd = "cd " + ShellQuote(dir.string()) + " && gnuplot " + ShellQuote(script) + " > gnuplot.log 2>&1";
  if (std::system(cmd.c_str()) != 0) {
    return Status::Internal("gnuplot failed on " + (dir / script).string() + "; see " + (dir / "gnuplot.log").string());
  }
  return Status::Ok();
}

// One plot per terminal: PNG (cairo) and SVG of the same commands.
std::string ForBothTerminals(const std::string& base, const std::string& body) {
  std::string out;
  const std::pair<const char*, const char*> terms[] = {
      {"pngcairo size 960,600 font 'DejaVu Sans,11'", "png"}, {"svg size 960,600 dynamic font 'DejaVu Sans,11'", "svg"}};
  for (const auto& [term, ext] : terms) {
    out += std::string("set terminal ") + term + "\nset output '" + base + "." + ext + "'\n" + body + "\nunset output\n";
  }
  return out;
}

std::string CostPlotBody(const std::string& model) {
  return "reset\nset datafile separator ','\nset logscale xy\nset grid\nset key top left\n"
         "set format y '%.0e'\n"
         "set xlabel 'document length L (tokens)'\nset ylabel 'USD per request (compute at machine price; egress)'\n"
         "set title 'cost per request vs L — " + model + " (lines: FLOP / fit model, points: measured)'\n"
         "plot 'cost_curve.csv' using 'doc_tokens':'prefill_usd' with lines lw 2 lc rgb '#c0392b' title 'prefill (model)', \\\n"
         "     'cost_curve.csv' using 'doc_tokens':'reuse_usd' with lines lw 2 lc rgb '#27ae60' title 'reuse, a hit (fit)', \\\n"
         "     'cost_curve.csv' using 'doc_tokens':'egress_raw_usd' with lines lw 2 dt 2 lc rgb '#2c3e50' title 'egress, raw artifact', \\\n"
         "     'cost_curve.csv' using 'doc_tokens':'egress_lossless_usd' with lines lw 2 dt 3 lc rgb '#8e44ad' title 'egress, lossless artifact', \\\n"
         "     'costs.csv' using 'doc_tokens':'prefill_usd' with points pt 7 ps 1.3 lc rgb '#c0392b' title 'prefill (measured)', \\\n"
         "     'costs.csv' using 'doc_tokens':'reuse_hit_usd' with points pt 7 ps 1.3 lc rgb '#27ae60' title 'reuse, a hit (measured)', \\\n"
         "     'costs.csv' using 'doc_tokens':'reuse_memory_usd' with points pt 5 ps 1.1 lc rgb '#16a085' title 'reuse, memory tier (measured)'\n";
}

}  // namespace

Status WriteCostPlots(const CostReport& report, const std::string& out_dir) {
  const fs::path dir(out_dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::IOError(out_dir + ": " + ec.message());
  KVMART_RETURN_IF_ERROR(WriteText(dir / "costs.csv", CostCsv(report)));
  KVMART_RETURN_IF_ERROR(WriteText(dir / "cost_curve.csv", CostCurveCsv(report)));
  KVMART_RETURN_IF_ERROR(WriteText(dir / "economics.json", CostReportJson(report)));
  KVMART_RETURN_IF_ERROR(WriteText(dir / "economics.txt", CostReportTable(report)));
  KVMART_RETURN_IF_ERROR(WriteText(dir / "cost_plot.gp", ForBothTerminals("cost_vs_length", CostPlotBody(report.shape.name))));
  return RunGnuplot(dir, "cost_plot.gp");
}

Status WriteReuseReport(const ReuseBenchResult& r, const Prices& prices, const std::string& out_dir) {
  const fs::path dir(out_dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::IOError(out_dir + ": " + ec.message());
  KVMART_RETURN_IF_ERROR(WriteText(dir / "reuse.json", ReuseJson(r)));
  KVMART_RETURN_IF_ERROR(WriteText(dir / "reuse.csv", ReuseCsv(r)));
  KVMART_RETURN_IF_ERROR(WriteText(dir / "reuse.txt", ReuseTable(r)));
  KVMART_ASSIGN_OR_RETURN(CostReport costs, BuildCostReport(prices, r.shape, FiguresOf(r)));
  KVMART_RETURN_IF_ERROR(WriteText(dir / "costs.csv", CostCsv(costs)));
  KVMART_RETURN_IF_ERROR(WriteText(dir / "cost_curve.csv", CostCurveCsv(costs)));
  KVMART_RETURN_IF_ERROR(WriteText(dir / "economics.json", CostReportJson(costs)));
  KVMART_RETURN_IF_ERROR(WriteText(dir / "economics.txt", CostReportTable(costs)));

  const std::string& m = r.shape.name;
  const std::string time_body =
      "reset\nset datafile separator ','\nset logscale xy\nset grid\nset key top left\n"
      "set xlabel 'document length L (tokens)'\nset ylabel 'seconds to the first token (median, min–max)'\n"
      "set title 'prefill from scratch vs reuse — " + m + "'\n"
      "plot 'reuse.csv' using 'doc_tokens':'scratch_s':'scratch_min':'scratch_max' with yerrorlines lw 2 pt 7 lc rgb '#c0392b' title 'prefill L + question', \\\n"
      "     'reuse.csv' using 'doc_tokens':'resident_s':'resident_min':'resident_max' with yerrorlines lw 2 pt 15 lc rgb '#d35400' title 'reuse: resident pages (Attach) + question', \\\n"
      "     'reuse.csv' using 'doc_tokens':'memory_s':'memory_min':'memory_max' with yerrorlines lw 2 pt 5 lc rgb '#27ae60' title 'reuse: memory tier + question', \\\n"
      "     'reuse.csv' using 'doc_tokens':'disk_raw_s':'disk_raw_min':'disk_raw_max' with yerrorlines lw 2 pt 9 lc rgb '#2980b9' title 'reuse: disk tier, raw', \\\n"
      "     'reuse.csv' using 'doc_tokens':'disk_lossless_s':'disk_lossless_min':'disk_lossless_max' with yerrorlines lw 2 pt 11 lc rgb '#8e44ad' title 'reuse: disk tier, lossless'\n";
  const std::string ratio_body =
      "reset\n$paper << EOD\n255,9\n3774,49.7\nEOD\nset datafile separator ','\nset logscale xy\nset grid\nset key top left\n"
      "set xlabel 'document length L (tokens)'\nset ylabel 'prefill time / reuse time'\n"
      "set title 'reuse speed-up vs L — " + m + " (bit-exact runs only)'\n"
      "plot 'reuse.csv' using 'doc_tokens':(column('exact') > 0 ? column('ratio_resident') : NaN) with linespoints lw 2 pt 15 lc rgb '#d35400' title 'resident pages (Attach)', \\\n"
      "     'reuse.csv' using 'doc_tokens':(column('exact') > 0 ? column('ratio_memory') : NaN) with linespoints lw 2 pt 5 lc rgb '#27ae60' title 'memory tier', \\\n"
      "     'reuse.csv' using 'doc_tokens':(column('exact') > 0 ? column('ratio_disk_raw') : NaN) with linespoints lw 2 pt 9 lc rgb '#2980b9' title 'disk tier, raw', \\\n"
      "     'reuse.csv' using 'doc_tokens':(column('exact') > 0 ? column('ratio_disk_lossless') : NaN) with linespoints lw 2 pt 11 lc rgb '#8e44ad' title 'disk tier, lossless', \\\n"
      "     'reuse.csv' using 'doc_tokens':'ratio_llamacpp' with linespoints lw 2 pt 13 lc rgb '#e67e22' title 'llama.cpp, same weights and tokens (load state + question)', \\\n"
      "     $paper using 1:2 with points pt 3 ps 2 lc rgb '#7f8c8d' title 'paper (published): Qwen3-4B fp16, M1 Pro GPU'\n";
  const std::string script = ForBothTerminals("time_vs_length", time_body) +
                             ForBothTerminals("ratio_vs_length", ratio_body) +
                             ForBothTerminals("cost_vs_length", CostPlotBody(m));
  KVMART_RETURN_IF_ERROR(WriteText(dir / "plots.gp", script));
  return RunGnuplot(dir, "plots.gp");
}

}  // namespace kvmart::economics
