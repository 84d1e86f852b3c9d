#pragma once
// Building a ScheduleData from a kind's arguments, and the way back (its arguments, its repr),
// all read from the kind's row (fusedlr/schedule_kinds.h). Plain C++17, no Python: the bindings
// (cpp/src/schedule_bindings.cpp) only convert Python values to ScheduleArgs and back, and
// tests/cpp/test_schedule.cpp builds and checks schedules without them. Host code.

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "fusedlr/schedule_check.h"
#include "fusedlr/schedule_kinds.h"

namespace fusedlr {

/** One argument of a factory, as the field of the kind's row it is for expects it. */
struct ScheduleArg {
  bool given = false;                       // false: None (or a child/list left out)
  double number = 0.0;                      // kNumber; kBool as 0/1
  std::string text;                         // kChoice
  std::vector<double> list;                 // kSteps, kFactors
  std::vector<ScheduleData> children;       // kChild (one), kChildren
};

/** An all-zero ScheduleData (padding too: equal schedules are equal bytes). */
inline ScheduleData empty_schedule() {
  ScheduleData d;
  std::memset(&d, 0, sizeof d);
  return d;
}

/** The number of fields of a kind's row. */
inline int field_count(const KindSpec& k) {
  int n = 0;
  while (n < kMaxKindFields && k.fields[n].name != nullptr) ++n;
  return n;
}

namespace detail {

/** Appends `child`'s nodes, values and links to `d` (indices relocated); its root's index. */
inline int append_tree(ScheduleData& d, const ScheduleData& child) {
  const int node0 = d.n_nodes, value0 = d.n_values, link0 = d.n_links;
  for (int k = 0; k < child.n_nodes; ++k) {
    ScheduleNode n = child.nodes[k];
    n.vfirst = static_cast<int16_t>(n.vfirst + value0);
    n.cfirst = static_cast<int16_t>(n.cfirst + link0);
    d.nodes[node0 + k] = n;
  }
  for (int k = 0; k < child.n_values; ++k) d.values[value0 + k] = child.values[k];
  for (int k = 0; k < child.n_links; ++k) d.links[link0 + k] = static_cast<int16_t>(child.links[k] + node0);
  d.n_nodes += child.n_nodes;
  d.n_values += child.n_values;
  d.n_links += child.n_links;
  return node0;
}

}  // namespace detail

/**
 * The schedule of kind `kind` from `args` (one per field of its row, in order), into `out`; the
 * problem as one sentence naming the kind and the argument, or empty. Every schedule built here
 * has passed schedule_error().
 */
inline std::string build_schedule(const std::string& kind, const std::vector<ScheduleArg>& args, ScheduleData& out) {
  const KindSpec* k = kind_spec(kind);
  if (k == nullptr) return "unknown schedule kind '" + kind + "'";
  const std::string fn = k->name;
  const int nf = field_count(*k);
  if (static_cast<int>(args.size()) != nf)
    return fn + ": takes " + std::to_string(nf) + " arguments, got " + std::to_string(args.size());
  ScheduleData d = empty_schedule();
  ScheduleNode& root = d.nodes[0];
  root.kind = k->kind;
  bool given[kMaxKindFields] = {};
  std::vector<double> values;
  std::vector<const ScheduleData*> kids;
  size_t lengths[2] = {0, 0};  // of the first and second value list
  int lists = 0;
  const char* list_names[2] = {"", ""};
  for (int i = 0; i < nf; ++i) {
    const Field& f = k->fields[i];
    const ScheduleArg& a = args[i];
    given[i] = a.given;
    switch (f.kind) {
      case FieldKind::kNumber:
        if (!a.given && !f.optional) return fn + ": " + f.name + " must be a number, got None";
        if (a.given) root.p[f.slot] = a.number;
        break;
      case FieldKind::kBool:
        if (a.given && a.number != 0.0) root.flags |= f.mask;
        break;
      case FieldKind::kChoice: {
        int index = -1;
        std::string list;
        for (int c = 0; c < f.n_choices; ++c) {
          if (a.text == f.choices[c]) index = c;
          list += (c ? ", '" : "'") + std::string(f.choices[c]) + "'";
        }
        if (index < 0) return fn + ": " + f.name + " must be one of " + list + ", got '" + a.text + "'";
        root.flags |= index << f.shift;
        break;
      }
      case FieldKind::kSteps:
      case FieldKind::kFactors: {
        std::vector<double> v = a.list;
        if (k->values == Values::kAll) std::sort(v.begin(), v.end());  // milestones in any order
        if (lists < 2) lengths[lists] = v.size(), list_names[lists++] = f.name;
        values.insert(values.end(), v.begin(), v.end());
        break;
      }
      case FieldKind::kChild:
      case FieldKind::kChildren:
        if (a.children.empty()) return fn + ": " + f.name + " must be a non-empty list of schedules, got []";
        for (const ScheduleData& c : a.children) kids.push_back(&c);
        break;
    }
  }
  // The lengths of the lists, as given (the node keeps only their sum).
  const std::string a = list_names[0], b = list_names[1];
  if (k->values == Values::kPlusOne && lengths[1] != lengths[0] + 1)
    return fn + ": " + b + " must be one longer than " + a + " (" + std::to_string(lengths[0] + 1) + " values), got " +
           std::to_string(lengths[1]) + " values";
  if (k->values == Values::kPairs && lengths[0] == 0) return fn + ": " + a + " must be non-empty, got []";
  if (k->values == Values::kPairs && lengths[1] != lengths[0])
    return fn + ": " + b + " must be as long as " + a + " (" + std::to_string(lengths[0]) + " values), got " +
           std::to_string(lengths[1]) + " values";
  if (k->values == Values::kOnePerBoundary && kids.size() >= 1 && lengths[0] + 1 != kids.size())
    return fn + ": " + a + " must be one shorter than schedules (" + std::to_string(kids.size() - 1) +
           " boundaries), got " + std::to_string(lengths[0]) + " boundaries";
  if (k->fill != nullptr)
    if (const char* problem = k->fill(root, given)) return fn + ": " + problem;
  // Fields that share a slot (one per choice: cycles' k_decay and tanh's lb): the one the flags
  // hold keeps it; a field not held leaves nothing behind (equal schedules are equal bytes).
  for (int i = 0; i < nf; ++i)
    if (k->fields[i].kind == FieldKind::kNumber && !field_held(k->fields[i], root)) root.p[k->fields[i].slot] = 0.0;
  for (int i = 0; i < nf; ++i)
    if (k->fields[i].kind == FieldKind::kNumber && field_held(k->fields[i], root) && args[i].given)
      root.p[k->fields[i].slot] = args[i].number;
  derive_params(root);
  int nodes = 1, nvalues = static_cast<int>(values.size());
  for (const ScheduleData* c : kids) nodes += c->n_nodes, nvalues += c->n_values;
  if (nodes > kMaxScheduleNodes)
    return fn + ": the schedule would have " + std::to_string(nodes) + " nodes, more than kMaxScheduleNodes = " +
           std::to_string(kMaxScheduleNodes);
  if (nvalues > kMaxScheduleValues)
    return fn + ": the schedule would hold " + std::to_string(nvalues) +
           " milestones/breakpoints, more than kMaxScheduleValues = " + std::to_string(kMaxScheduleValues);
  root.vcount = static_cast<int16_t>(values.size());
  std::copy(values.begin(), values.end(), d.values);
  d.n_values = static_cast<int32_t>(values.size());
  root.ccount = static_cast<int16_t>(kids.size());
  d.n_links = static_cast<int32_t>(kids.size());
  d.n_nodes = 1;
  for (size_t c = 0; c < kids.size(); ++c) d.links[c] = static_cast<int16_t>(detail::append_tree(d, *kids[c]));
  const std::string problem = schedule_error(d);
  if (!problem.empty()) return problem;
  out = d;
  return {};
}

/**
 * The subtree of `d` rooted at node `i`, as a schedule of its own, laid out as build_schedule
 * lays a tree out (the node, its values, then each child's subtree in turn).
 */
inline ScheduleData subtree(const ScheduleData& d, int i) {
  ScheduleData out = empty_schedule();
  ScheduleNode n = d.nodes[i];
  n.vfirst = 0;
  n.cfirst = 0;
  out.nodes[0] = n;
  for (int v = 0; v < n.vcount; ++v) out.values[v] = d.values[d.nodes[i].vfirst + v];
  out.n_nodes = 1;
  out.n_values = n.vcount;
  out.n_links = n.ccount;
  for (int c = 0; c < n.ccount; ++c)
    out.links[c] = static_cast<int16_t>(detail::append_tree(out, subtree(d, d.links[d.nodes[i].cfirst + c])));
  return out;
}

/**
 * The arguments that build node `i` of `d` again (the inverse of build_schedule): what repr
 * prints, pickling stores and Schedule.arguments shows. A field a kind does not hold (None, the
 * other of exponential's gamma and rate) is not given.
 */
inline std::vector<ScheduleArg> schedule_arguments(const ScheduleData& d, int i = 0) {
  const ScheduleNode& n = d.nodes[i];
  const KindSpec* k = kind_spec(n.kind);
  std::vector<ScheduleArg> args;
  if (k == nullptr) return args;
  const int nf = field_count(*k);
  int list = 0, offset = 0;
  const int half = n.vcount / 2;
  for (int f_i = 0; f_i < nf; ++f_i) {
    const Field& f = k->fields[f_i];
    ScheduleArg a;
    a.given = true;
    switch (f.kind) {
      case FieldKind::kNumber:
        a.number = n.p[f.slot];
        a.given = field_held(f, n) && !(f.range == ValueRange::kOptionalSteps && a.number == -1.0);
        break;
      case FieldKind::kBool:
        a.number = (n.flags & f.mask) ? 1.0 : 0.0;
        break;
      case FieldKind::kChoice:
        a.text = f.choices[(n.flags & f.mask) >> f.shift];
        break;
      case FieldKind::kSteps:
      case FieldKind::kFactors: {
        int count = n.vcount;
        if (k->values == Values::kPlusOne || k->values == Values::kPairs) count = list == 0 ? half : n.vcount - half;
        a.list.assign(d.values + n.vfirst + offset, d.values + n.vfirst + offset + count);
        offset += count;
        ++list;
        break;
      }
      case FieldKind::kChild:
      case FieldKind::kChildren:
        for (int c = 0; c < n.ccount; ++c) a.children.push_back(subtree(d, d.links[n.cfirst + c]));
        break;
    }
    args.push_back(std::move(a));
  }
  return args;
}

/** Whether a number field prints as a count of steps (an integer when it is whole). */
inline bool counts_steps(const Field& f) {
  return f.range == ValueRange::kLength || f.range == ValueRange::kSteps || f.range == ValueRange::kPositiveSteps ||
         f.range == ValueRange::kOptionalSteps;
}

/** The factory call that builds `d` again: "warmup(cosine(T_max=90, ...), steps=10, ...)". */
inline std::string schedule_repr(const ScheduleData& d) {
  const KindSpec* k = kind_spec(d.nodes[0].kind);
  if (k == nullptr) return "<invalid schedule node>";
  const std::vector<ScheduleArg> args = schedule_arguments(d, 0);
  std::string out = std::string(k->name) + "(";
  bool first = true;
  auto item = [&](const std::string& s) {
    out += (first ? "" : ", ") + s;
    first = false;
  };
  auto list = [](const std::vector<double>& v, bool as_int) {
    std::string s = "[";
    for (size_t j = 0; j < v.size(); ++j) s += (j ? ", " : "") + format_number(v[j], as_int);
    return s + "]";
  };
  for (size_t j = 0; j < args.size(); ++j) {
    const Field& f = k->fields[j];
    const ScheduleArg& a = args[j];
    switch (f.kind) {
      case FieldKind::kNumber:
        if (a.given) item(std::string(f.name) + "=" + format_number(a.number, counts_steps(f)));
        break;
      case FieldKind::kBool:
        if (!(f.hide_false && a.number == 0.0)) item(std::string(f.name) + "=" + (a.number != 0.0 ? "True" : "False"));
        break;
      case FieldKind::kChoice:
        item(std::string(f.name) + "='" + a.text + "'");
        break;
      case FieldKind::kSteps:
      case FieldKind::kFactors:
        item(std::string(f.name) + "=" + list(a.list, f.kind == FieldKind::kSteps));
        break;
      case FieldKind::kChild:
        item(schedule_repr(a.children.at(0)));
        break;
      case FieldKind::kChildren: {
        std::string s = "[";
        for (size_t c = 0; c < a.children.size(); ++c) s += (c ? ", " : "") + schedule_repr(a.children[c]);
        item(s + "]");
        break;
      }
    }
  }
  return out + ")";
}

/** Whether two laid-out schedules are equal bytes where it matters: nodes, values, links. */
inline bool same_layout(const ScheduleData& a, const ScheduleData& b) {
  if (a.n_nodes != b.n_nodes || a.n_values != b.n_values || a.n_links != b.n_links) return false;
  for (int i = 0; i < a.n_nodes; ++i) {
    const ScheduleNode &x = a.nodes[i], &y = b.nodes[i];
    if (x.kind != y.kind || x.flags != y.flags || x.vfirst != y.vfirst || x.vcount != y.vcount ||
        x.cfirst != y.cfirst || x.ccount != y.ccount)
      return false;
    for (int k = 0; k < kScheduleParams; ++k)
      if (x.p[k] != y.p[k]) return false;
  }
  for (int i = 0; i < a.n_values; ++i)
    if (a.values[i] != b.values[i]) return false;
  for (int i = 0; i < a.n_links; ++i)
    if (a.links[i] != b.links[i]) return false;
  return true;
}

/**
 * Whether two schedules are the same tree with the same numbers, however their nodes are laid
 * out (bytes from elsewhere may order them otherwise than build_schedule does, or hold unused values).
 */
inline bool same_schedule(const ScheduleData& a, const ScheduleData& b) {
  return same_layout(a, b) || same_layout(subtree(a, 0), subtree(b, 0));
}

/**
 * A node's parameters as the state format 1 (fusedlr 0.1, before the kinds' rows) laid them out,
 * moved to today's slots: cyclic kept (total, up / total) where it now keeps (up, down), and wsd
 * the step where the decay starts where it now keeps total_steps.
 */
inline void upgrade_format1_params(ScheduleNode& n) {
  if (n.kind == ScheduleKind::kCyclic) {
    double up = n.p[2] * n.p[3];
    // The product's rounding error, snapped to the whole step it was built from.
    if (std::fabs(up - std::nearbyint(up)) <= 1e-9 * std::fmax(1.0, up)) up = std::nearbyint(up);
    const double total = n.p[2];
    n.p[2] = up;
    n.p[3] = total - up;
  } else if (n.kind == ScheduleKind::kWsd) {
    n.p[1] = n.p[1] + n.p[2];  // total = decay start + decay
  }
}

}  // namespace fusedlr
