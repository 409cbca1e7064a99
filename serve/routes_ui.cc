// /ui: a page for administrators (plain HTML and JS, no build step) that
// lists the container VMs, what each costs (private, shared with its
// template, kernel), their ports and images, with a live memory chart; and
// /vicvmm/overview, the JSON it polls (the same figures as `vicvmm ps`).
#include "serve/containers.h"
#include "serve/overview.h"
#include "serve/routes.h"

namespace vicvmm::serve {

namespace {

constexpr const char* kPage = R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>vicvmm: container VMs</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1d2330; background: #f6f7f9; }
  h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 28px 0 8px; }
  .sub { color: #5b6475; margin-bottom: 16px; }
  .cards { display: flex; gap: 12px; flex-wrap: wrap; }
  .card { background: #fff; border: 1px solid #dde1e8; border-radius: 8px; padding: 10px 14px; min-width: 150px; }
  .card b { display: block; font-size: 20px; }
  table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid #dde1e8; }
  th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid #eef0f4; vertical-align: top; }
  th { background: #eef1f6; font-weight: 600; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
  .running { color: #137333; } .exited { color: #8a5a00; } code { font-size: 12px; }
  #chart { background: #fff; border: 1px solid #dde1e8; border-radius: 8px; }
  .legend span { display: inline-block; margin-right: 14px; } .sw { width: 10px; height: 10px; display: inline-block; margin-right: 4px; }
</style>
</head>
<body>
<h1>vicvmm: every container is a VM</h1>
<div class="sub">Forked copy-on-write from a base VM; memory is split into pages private to a VM, pages it still shares with its template, and the kernel memory KVM keeps for it. Refreshes every 2 s. <span id="updated"></span></div>
<div class="cards">
  <div class="card">containers running<b id="running">-</b></div>
  <div class="card">host memory used<b id="used">-</b></div>
  <div class="card">without sharing<b id="unshared">-</b></div>
  <div class="card">saved by sharing<b id="saved">-</b></div>
</div>
<h2>Containers</h2>
<table id="containers"><thead><tr><th>name</th><th>image</th><th>template</th><th>state</th><th>uptime</th><th>exit</th><th>ports</th><th>CPU</th><th>private</th><th>shared</th><th>kernel</th></tr></thead><tbody></tbody></table>
<h2>Memory per container (private + kernel), last 2 minutes</h2>
<svg id="chart" width="900" height="220" viewBox="0 0 900 220"></svg>
<div class="legend" id="legend"></div>
<h2>Port mappings</h2>
<table id="ports"><thead><tr><th>host</th><th>container</th><th>guest port</th></tr></thead><tbody></tbody></table>
<h2>Images</h2>
<table id="images"><thead><tr><th>tags</th><th>id</th><th>size</th><th>disk</th><th>layers</th><th>containers</th></tr></thead><tbody></tbody></table>
<script>
"use strict";
const colors = ["#1a73e8", "#d93025", "#188038", "#f29900", "#9334e6", "#12b5cb", "#e8710a", "#5f6368"];
const history = {};  // name -> [bytes...]
const mib = b => b == null ? "?" : (b / 1048576).toFixed(1) + " MiB";
const esc = s => String(s).replace(/[&<>"]/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
function dur(s) { s = Math.floor(s); return s < 60 ? s + " s" : s < 3600 ? Math.floor(s / 60) + " min" : Math.floor(s / 3600) + " h"; }
function rows(id, html) { document.querySelector("#" + id + " tbody").innerHTML = html.join(""); }
function render(o) {
  const h = o.host;
  document.getElementById("running").textContent = h.running + " / " + h.containers;
  document.getElementById("used").textContent = mib(h.memory_used);
  document.getElementById("unshared").textContent = mib(h.memory_without_sharing);
  document.getElementById("saved").textContent = mib(h.memory_without_sharing - h.memory_used);
  document.getElementById("updated").textContent = "Updated " + new Date(h.time_ns / 1e6).toLocaleTimeString();
  rows("containers", o.containers.map(c => {
    const m = c.memory || {};
    const ports = c.ports.map(p => esc(p.host_ip + ":" + p.host_port + "->" + p.guest_port + "/" + p.proto)).join("<br>");
    return `<tr data-id="${esc(c.id)}"><td>${esc(c.name)}</td><td>${esc(c.image)}</td><td><code>${esc(c.template)}</code></td>` +
      `<td class="${esc(c.state)}">${esc(c.state)}</td><td class="num">${c.state === "running" ? dur(c.uptime_s) : ""}</td>` +
      `<td class="num">${c.state === "exited" ? c.exit_code : ""}</td><td>${ports}</td>` +
      `<td class="num">${c.cpu_ns != null ? (c.cpu_ns / 1e9).toFixed(2) + " s" : ""}</td>` +
      `<td class="num private">${c.memory ? mib(m.private) : ""}</td><td class="num shared">${c.memory ? mib(m.shared) : ""}</td>` +
      `<td class="num kernel">${c.memory ? mib(m.kernel) : ""}</td></tr>`;
  }));
  rows("ports", o.containers.filter(c => c.state === "running").flatMap(c => c.ports.map(p =>
    `<tr><td>${esc(p.host_ip)}:${p.host_port}</td><td>${esc(c.name)}</td><td>${p.guest_port}/${esc(p.proto)}</td></tr>`)));
  rows("images", o.images.map(i =>
    `<tr><td>${esc(i.tags.join(", ") || "<none>")}</td><td><code>${esc(i.id.slice(0, 12))}</code></td>` +
    `<td class="num">${mib(i.size)}</td><td class="num">${i.disk_size ? mib(i.disk_size) : "-"}</td>` +
    `<td>${i.layers.map(l => `<code>${esc(l.digest.slice(7, 19))}</code> ${mib(l.size)}`).join("<br>")}</td>` +
    `<td>${esc(i.containers.join(", "))}</td></tr>`));
  for (const c of o.containers) {
    if (!c.memory) continue;
    (history[c.name] = history[c.name] || []).push(c.memory.private + (c.memory.kernel || 0));
    if (history[c.name].length > 60) history[c.name].shift();
  }
  chart(o.containers.filter(c => c.memory).map(c => c.name));
}
function chart(names) {
  const svg = document.getElementById("chart"), W = 900, H = 220, pad = 40;
  const max = Math.max(1, ...names.flatMap(n => history[n]));
  let out = `<line x1="${pad}" y1="${H - 20}" x2="${W - 10}" y2="${H - 20}" stroke="#ccd"/>` +
            `<text x="4" y="16" font-size="11" fill="#556">${mib(max)}</text><text x="4" y="${H - 22}" font-size="11" fill="#556">0</text>`;
  names.forEach((n, k) => {
    const pts = history[n].map((v, i) => `${pad + i * (W - pad - 10) / 59},${H - 20 - v / max * (H - 40)}`).join(" ");
    out += `<polyline fill="none" stroke-width="2" stroke="${colors[k % colors.length]}" points="${pts}"/>`;
  });
  svg.innerHTML = out;
  document.getElementById("legend").innerHTML = names.map((n, k) =>
    `<span><i class="sw" style="background:${colors[k % colors.length]}"></i>${esc(n)}</span>`).join("");
}
async function tick() {
  try { render(await (await fetch("/vicvmm/overview")).json()); } catch (e) { document.getElementById("updated").textContent = "(" + e + ")"; }
}
tick();
setInterval(tick, 2000);
</script>
</body>
</html>
)HTML";

}  // namespace

void add_ui_routes(Router& r, const Context& ctx) {
  image::Store* store = ctx.store;
  ContainerManager* m = ctx.containers;
  r.add(http::verb::get, "/ui", [](Request&, Connection&) -> asio::awaitable<Response> {
    co_return Response{200, "text/html; charset=utf-8", kPage, {}};
  });
  r.add(http::verb::get, "/vicvmm/overview", [store, m](Request&, Connection& conn) -> asio::awaitable<Response> {
    auto job = [store, m]() -> Result<nlohmann::json> {
      VIC_ASSIGN(auto images, store->list());
      std::vector<Container> containers = m ? m->list() : std::vector<Container>{};
      std::string base = m ? m->base_template() : "";
      return overview(containers, images, base.substr(base.rfind('/') + 1));
    };
    auto o = co_await conn.blocking(job);
    if (!o) co_return error_response(500, o.error().message);
    co_return json_response(*o);
  });
}

}  // namespace vicvmm::serve
