#include "tools/table_runner.h"

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/error.h"
#include "tools/progress.h"

namespace qslim::tools {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string self_exe() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  QSLIM_CHECK(!ec, "table: cannot find this executable through /proc/self/exe: ", ec.message());
  return p.string();
}

std::string quoted(const std::string& s) {
  if (s.find_first_of(" \t\"'$\\*?;&|<>()") == std::string::npos && !s.empty()) return s;
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The checkpoint's modification time (ns), which tells a method job whether the FP32 model it
// quantized is still the one on disk; -1 when there is no file.
int64_t checkpoint_stamp(const std::string& path) {
  std::error_code ec;
  const auto t = fs::last_write_time(path, ec);
  return ec ? -1 : static_cast<int64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}

// Appends args to argv, "@recipes/NAME" as a path under recipes_dir, leaving out an "--epochs N"
// pair when a table-wide override replaces it.
void append_args(std::vector<std::string>& argv, const std::vector<std::string>& args, bool drop_epochs,
                 const std::string& recipes_dir) {
  for (size_t i = 0; i < args.size(); ++i) {
    if (drop_epochs && args[i] == "--epochs") {
      ++i;
      continue;
    }
    const std::string& a = args[i];
    argv.push_back(a.rfind("@recipes/", 0) == 0 ? (fs::path(recipes_dir) / a.substr(9)).string() : a);
  }
}

}  // namespace

std::string command_line(const std::vector<std::string>& argv) {
  std::string s = "qslim";
  for (const std::string& a : argv) s += " " + quoted(a);
  return s;
}

int run_logged(const std::vector<std::string>& argv, const std::string& log_path, std::string& json_line,
               std::string& tail) {
  int fds[2];
  QSLIM_CHECK(pipe(fds) == 0, "table: pipe failed");
  const pid_t pid = fork();
  QSLIM_CHECK(pid >= 0, "table: fork failed");
  if (pid == 0) {
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    close(fds[0]);
    close(fds[1]);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    std::perror("table: exec");
    _exit(127);
  }
  close(fds[1]);
  std::ofstream log(log_path, std::ios::app);
  QSLIM_CHECK(log.good(), "table: cannot write the log ", log_path);
  std::deque<std::string> last;
  std::string line;
  char buf[4096];
  ssize_t n;
  auto take = [&](const std::string& l) {
    log << l << '\n';
    if (!l.empty() && l.front() == '{') {
      try {
        if (json::parse(l).is_object()) json_line = l;
      } catch (const json::exception&) {
      }
    }
    last.push_back(l);
    if (last.size() > 8) last.pop_front();
  };
  while ((n = read(fds[0], buf, sizeof buf)) > 0) {
    for (ssize_t i = 0; i < n; ++i) {
      if (buf[i] == '\n' || buf[i] == '\r') {
        if (!line.empty()) take(line);
        line.clear();
      } else {
        line += buf[i];
      }
    }
  }
  if (!line.empty()) take(line);
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  tail.clear();
  for (const std::string& l : last) tail += l + "\n";
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

TableRunner::TableRunner(TableOptions options, std::vector<TableModel> models, std::vector<std::string> methods)
    : o_(std::move(options)), models_(std::move(models)), methods_(std::move(methods)) {
  fs::create_directories(fs::path(o_.out_dir) / "logs");
  const fs::path results = fs::path(o_.out_dir) / "results.json";
  if (fs::exists(results)) {
    try {
      results_ = json::parse(read_text(results));
    } catch (const json::exception& e) {
      QSLIM_FAIL("table: ", results.string(), " is not valid JSON (", e.what(),
                 "); remove it to start the table afresh");
    }
    QSLIM_CHECK(results_.is_object() && results_.contains("jobs") && results_["jobs"].is_object(), "table: ",
                results.string(), " has no \"jobs\" object; remove it to start the table afresh");
  } else {
    results_ = {{"jobs", json::object()}};
  }
}

std::string TableRunner::checkpoint_of(const TableModel& m) const {
  if (!m.checkpoint.empty()) return m.checkpoint;
  return (fs::path(o_.out_dir) / "fp32" / safe_name(m.name) / "model.safetensors").string();
}

TableJob TableRunner::fp32_job(const TableModel& m) const {
  TableJob j{"fp32/" + m.name, m.name, "fp32", {}};
  if (!m.checkpoint.empty()) {
    j.argv = {"eval", "--checkpoint", m.checkpoint, "--json"};
    if (o_.limit > 0) j.argv.insert(j.argv.end(), {"--limit", std::to_string(o_.limit)});
    if (o_.threads > 0) j.argv.insert(j.argv.end(), {"--threads", std::to_string(o_.threads)});
    if (!o_.data_dir.empty()) j.argv.insert(j.argv.end(), {"--data-dir", o_.data_dir});
    return j;
  }
  j.argv = {"train", "--recipe", (fs::path(o_.recipes_dir) / m.recipe).string()};
  append_args(j.argv, m.train_flags, o_.epochs > 0, o_.recipes_dir);
  if (o_.epochs > 0) j.argv.insert(j.argv.end(), {"--epochs", std::to_string(o_.epochs)});
  j.argv.insert(j.argv.end(), {"--seed", std::to_string(o_.seed), "--out",
                               (fs::path(o_.out_dir) / "fp32" / safe_name(m.name)).string(), "--json"});
  if (o_.limit > 0) j.argv.insert(j.argv.end(), {"--limit", std::to_string(o_.limit)});
  if (o_.threads > 0) j.argv.insert(j.argv.end(), {"--threads", std::to_string(o_.threads)});
  if (!o_.data_dir.empty()) j.argv.insert(j.argv.end(), {"--data-dir", o_.data_dir});
  return j;
}

TableJob TableRunner::method_job(const TableModel& m, const std::string& method) const {
  const TableMethod& t = table_method(method);
  TableJob j{m.name + "/" + method, m.name, method, {t.command, "--from", checkpoint_of(m)}};
  const bool fine_tunes = t.command == "qat" || t.command == "train";
  append_args(j.argv, t.args, fine_tunes && o_.qat_epochs > 0, o_.recipes_dir);
  const auto preset_args = o_.method_args.find(method);
  if (preset_args != o_.method_args.end())
    append_args(j.argv, preset_args->second, fine_tunes && o_.qat_epochs > 0, o_.recipes_dir);
  // Every method job compares with the FP32 model; the figures its training recorded spare an evaluation.
  j.argv.insert(j.argv.end(), {"--out", (fs::path(o_.out_dir) / safe_name(m.name) / method).string(), "--json",
                               "--fp32-from-checkpoint"});
  if (fine_tunes) {
    if (o_.qat_epochs > 0) j.argv.insert(j.argv.end(), {"--epochs", std::to_string(o_.qat_epochs)});
    j.argv.insert(j.argv.end(), {"--seed", std::to_string(o_.seed)});
  }
  if (t.command == "ptq" && o_.batch_nums > 0) j.argv.insert(j.argv.end(), {"--batch-nums", std::to_string(o_.batch_nums)});
  if (o_.limit > 0) j.argv.insert(j.argv.end(), {"--limit", std::to_string(o_.limit)});
  if (o_.threads > 0) j.argv.insert(j.argv.end(), {"--threads", std::to_string(o_.threads)});
  if (!o_.data_dir.empty()) j.argv.insert(j.argv.end(), {"--data-dir", o_.data_dir});
  return j;
}

std::vector<TableJob> TableRunner::jobs() const {
  std::vector<TableJob> out;
  for (const TableModel& m : models_) {
    out.push_back(fp32_job(m));
    for (const std::string& method : methods_) out.push_back(method_job(m, method));
  }
  return out;
}

void TableRunner::save() const {
  const fs::path path = fs::path(o_.out_dir) / "results.json";
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    QSLIM_CHECK(out.good(), "table: cannot write ", tmp.string());
    out << results_.dump(2) << '\n';
    out.flush();
    QSLIM_CHECK(out.good(), "table: writing ", tmp.string(), " failed");
  }
  fs::rename(tmp, path);
}

int TableRunner::run() {
  const std::string exe = self_exe();
  const std::vector<TableJob> all = jobs();
  json& done = results_["jobs"];
  std::set<std::string> retrained;  // models whose FP32 job runs now: their method jobs are stale
  auto checkpoint_path = [&](const std::string& model) {
    for (const TableModel& m : models_)
      if (m.name == model) return checkpoint_of(m);
    return std::string();
  };
  // Recorded with the same command and, for a method job, on the FP32 checkpoint now on disk
  // (records from before the stamp was kept are taken as they are).
  auto recorded = [&](const TableJob& j) {
    if (!(done.contains(j.id) && done[j.id].value("command", "") == command_line(j.argv) &&
          done[j.id].value("status", -1) == 0))
      return false;
    if (j.method == "fp32") return true;
    if (retrained.count(j.model)) return false;
    const json& rec = done[j.id];
    return !rec.contains("checkpoint_stamp") ||
           rec["checkpoint_stamp"].get<int64_t>() == checkpoint_stamp(checkpoint_path(j.model));
  };
  // Relative costs for the ETA; replaced by measured seconds per unit of cost as jobs finish.
  auto cost = [&](const TableJob& j) { return j.method == "fp32" ? 3.0 : table_method(j.method).cost; };
  double pending_cost = 0, measured_cost = 0, measured_s = 0;
  for (const TableJob& j : all)
    if (!recorded(j)) pending_cost += cost(j);
  int failed = 0, index = 0;
  const auto t_start = std::chrono::steady_clock::now();
  for (const TableJob& j : all) {
    ++index;
    const std::string cmd = command_line(j.argv);
    if (recorded(j)) {
      std::printf("[%d/%zu] %-40s recorded earlier, skipped\n", index, all.size(), j.id.c_str());
      continue;
    }
    if (j.method != "fp32") {
      const json& f = done.value("fp32/" + j.model, json());
      if (!f.is_object() || f.value("status", -1) != 0) {
        std::printf("[%d/%zu] %-40s skipped: the FP32 checkpoint of %s failed\n", index, all.size(), j.id.c_str(),
                    j.model.c_str());
        ++failed;
        continue;
      }
    }
    const double eta = measured_cost > 0 ? pending_cost * measured_s / measured_cost : -1;
    std::printf("[%d/%zu] %-40s running%s%s\n", index, all.size(), j.id.c_str(), eta >= 0 ? "  ETA " : "",
                eta >= 0 ? format_duration(eta).c_str() : "");
    std::fflush(stdout);
    std::vector<std::string> argv = {exe};
    argv.insert(argv.end(), j.argv.begin(), j.argv.end());
    const std::string log = (fs::path(o_.out_dir) / "logs" / (safe_name(j.model) + "__" + j.method + ".log")).string();
    std::string json_line, tail;
    const auto t0 = std::chrono::steady_clock::now();
    const int status = run_logged(argv, log, json_line, tail);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    json rec = {{"model", j.model}, {"method", j.method}, {"command", cmd}, {"commit", o_.commit},
                {"status", status}, {"seconds", seconds}, {"log", log}};
    if (j.method == "fp32")
      retrained.insert(j.model);
    else
      rec["checkpoint_stamp"] = checkpoint_stamp(checkpoint_path(j.model));
    if (status == 0 && !json_line.empty()) {
      rec["figures"] = json::parse(json_line);
    } else {
      rec["status"] = status == 0 ? -1 : status;
      rec["error"] = status == 0 ? "the command printed no JSON figures" : tail;
      ++failed;
      std::printf("  failed (status %d), see %s\n%s", status, log.c_str(), tail.c_str());
    }
    done[j.id] = rec;
    save();
    pending_cost -= cost(j);
    measured_cost += cost(j);
    measured_s += seconds;
    std::printf("  done in %s (table so far %s)\n", format_duration(seconds).c_str(),
                format_duration(std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count())
                    .c_str());
    std::fflush(stdout);
  }
  return failed;
}

}  // namespace qslim::tools
