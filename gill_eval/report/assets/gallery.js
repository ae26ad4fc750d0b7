/* gill-eval gallery: renders window.GALLERY (written by gill_eval/report/html.py) with sort, filter and
   pages. No network, no libraries: the site works from file://. Images are thumbnails with
   loading="lazy"; a click opens the full-size file. See docs in gill_eval/report/gallery.py. */
(function () {
  "use strict";
  var D = window.GALLERY;
  var keyIndex = {};
  D.keys.forEach(function (k, i) { keyIndex[k.id] = i; });
  var state = { key: "", minus: "", order: "asc", q: "", min: "", max: "", page: 0, size: 25 };

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      if (name === "text") { node.textContent = attrs[name]; } else { node.setAttribute(name, attrs[name]); }
    });
    (children || []).forEach(function (child) { if (child) { node.appendChild(child); } });
    return node;
  }
  function fmt(value, digits) { return value === null || value === undefined || isNaN(value) ? "-" : value.toFixed(digits); }
  function picture(stem, cls, title) {
    var image = el("img", { src: "thumbs/" + stem + ".jpg", loading: "lazy", alt: title, title: title });
    return el("a", { href: "full/" + stem + ".png", target: "_blank", "class": cls || "pic" }, [image]);
  }
  function keyValue(row) {
    if (!state.key) { return null; }
    var a = row.k[keyIndex[state.key]];
    if (a === null || a === undefined || isNaN(a)) { return null; }
    if (!state.minus) { return a; }
    var b = row.k[keyIndex[state.minus]];
    return b === null || b === undefined || isNaN(b) ? null : a - b;
  }

  function visibleRows() {
    var words = state.q.toLowerCase().split(/\s+/).filter(Boolean);
    var lo = state.min === "" ? null : Number(state.min);
    var hi = state.max === "" ? null : Number(state.max);
    var rows = D.rows.filter(function (row) {
      var text = row.q.toLowerCase();
      if (!words.every(function (w) { return text.indexOf(w) >= 0; })) { return false; }
      if (lo === null && hi === null) { return true; }
      var v = keyValue(row);
      return v !== null && (lo === null || v >= lo) && (hi === null || v <= hi);
    });
    if (state.key) {
      var sign = state.order === "desc" ? -1 : 1;
      rows = rows.map(function (row, i) { return { row: row, v: keyValue(row), i: i }; });
      rows.sort(function (a, b) {
        if (a.v === null || b.v === null) { return a.v === null ? (b.v === null ? a.i - b.i : 1) : -1; }
        return a.v === b.v ? a.i - b.i : sign * (a.v - b.v);
      });
      rows = rows.map(function (x) { return x.row; });
    } else if (state.order === "desc") {
      rows = rows.slice().reverse();
    }
    return rows;
  }

  function contextCell(row) {
    var parts = [el("div", { "class": "rid", text: row.id })];
    row.ctx.forEach(function (item) {
      parts.push(item.text !== undefined ? el("div", { "class": "ctxt", text: item.text }) : picture(item.img, "pic ctx", "context image"));
    });
    return el("td", { "class": "context" }, parts);
  }
  function truthCell(row) {
    return el("td", { "class": "truth" }, [row.truth ? picture(row.truth, "pic", "ground truth") : el("span", { text: "-" })]);
  }

  function generationCells(row) {
    var tds = [contextCell(row), truthCell(row)];
    D.labels.forEach(function (label) {
      var model = D.models[label];
      var figures = (row.cells[label] || []).map(function (cell) {
        var caption = "seed " + cell.s + D.metrics.map(function (m, i) {
          var v = cell.v ? cell.v[i] : null;
          return v === null || v === undefined ? "" : " · " + D.metric_titles[m].replace(/ [↑↓]$/, "") + " " + fmt(v, 3);
        }).join("");
        var body = cell.err ? el("div", { "class": "err", text: cell.err })
          : picture(model.prefix + "/s" + cell.s + "/" + row.f, "pic", label + " seed " + cell.s);
        return el("figure", {}, [body, el("figcaption", { text: caption })]);
      });
      tds.push(el("td", { "class": "model" }, figures));
    });
    return tds;
  }

  function retrievalCells(row) {
    var tds = [contextCell(row), truthCell(row)];
    D.labels.forEach(function (label) {
      var cell = row.cells[label];
      if (!cell) { tds.push(el("td", { text: "-" })); return; }
      var figures = cell.top.map(function (c, i) {
        var body = c.img ? picture(c.img, c.hit ? "pic hit" : "pic", c.key) : el("div", { "class": "err", text: c.key });
        return el("figure", { "class": c.hit ? "hit" : "" }, [body, el("figcaption", { text: (i + 1) + ". " + fmt(c.score, 3) + (c.hit ? " target" : "") })]);
      });
      tds.push(el("td", { "class": "model" }, [el("div", { "class": "rank", text: "target rank " + cell.rank })].concat(figures)));
    });
    return tds;
  }

  function decisionCells(row) {
    return [el("td", { "class": "rid", text: row.id }), el("td", { text: row.prompt }), el("td", { text: row.split }),
      el("td", { text: row.label + " (" + row.votes.join(", ") + ")" }), el("td", { text: fmt(row.p, 3) }),
      el("td", { "class": row.verdict, text: (row.decision || "-") + (row.verdict ? " (" + row.verdict + ")" : "") }),
      el("td", { text: fmt(row.cos, 3) })];
  }

  function textCells(row) {
    var refs = el("td", { "class": "truth" }, row.refs.map(function (r) { return el("div", { "class": "ctxt", text: r }); }));
    var tds = [contextCell(row), refs];
    D.labels.forEach(function (label) {
      var answers = (row.cells[label] || []).map(function (cell) {
        return el("figure", {}, [el("div", { "class": "ctxt answer", text: cell.a || "(empty)" }),
          el("figcaption", { text: "seed " + cell.s + " · " + D.metric + " " + fmt(cell.v, 3) })]);
      });
      tds.push(el("td", { "class": "model" }, answers.length ? answers : [el("span", { text: "-" })]));
    });
    return tds;
  }

  function header() {
    var names;
    if (D.kind === "decision") {
      names = ["key", "prompt", "split", "human label (votes)", "classifier p(ret)", "decision at " + D.summary.threshold, "max cosine"];
    } else {
      names = [D.kind === "retrieval" ? "query context" : (D.kind === "text" ? "image and prompt" : "context"),
        D.kind === "retrieval" ? "target" : (D.kind === "text" ? "references" : "ground truth")].concat(D.labels);
    }
    return el("tr", {}, names.map(function (n) { return el("th", { text: n }); }));
  }

  function render() {
    var rows = visibleRows();
    var pages = Math.max(1, Math.ceil(rows.length / state.size));
    state.page = Math.min(state.page, pages - 1);
    var body = document.getElementById("rows");
    body.textContent = "";
    body.appendChild(header());
    var cells = { generation: generationCells, retrieval: retrievalCells, decision: decisionCells, text: textCells }[D.kind];
    rows.slice(state.page * state.size, (state.page + 1) * state.size).forEach(function (row) {
      var tr = el("tr", { "data-id": row.id }, cells(row));
      var v = keyValue(row);
      if (state.key) { tr.firstChild.appendChild(el("div", { "class": "keyval", text: "sort value " + fmt(v, 4) })); }
      body.appendChild(tr);
    });
    document.querySelectorAll(".pageinfo").forEach(function (node) {
      node.textContent = "page " + (state.page + 1) + " of " + pages + " (" + rows.length + " of " + D.rows.length + " rows)";
    });
  }

  function select(id, options, value) {
    var node = el("select", { id: id }, options.map(function (o) { return el("option", { value: o[0], text: o[1] }); }));
    node.value = value;
    return node;
  }
  function labelled(text, control) { return el("label", {}, [document.createTextNode(text + " "), control]); }

  function controls() {
    var keys = [["", D.kind === "decision" ? "key" : "example id"]].concat(D.keys.map(function (k) { return [k.id, k.title]; }));
    var bar = document.getElementById("controls");
    bar.appendChild(labelled("sort by", select("sort", keys, state.key)));
    bar.appendChild(labelled("minus", select("minus", [["", "(nothing)"]].concat(keys.slice(1)), state.minus)));
    bar.appendChild(labelled("order", select("order", [["asc", "smallest first"], ["desc", "largest first"]], state.order)));
    bar.appendChild(labelled("search", el("input", { id: "q", type: "search", placeholder: "words in id / text" })));
    bar.appendChild(labelled("sort value from", el("input", { id: "min", type: "number", step: "any", size: "6" })));
    bar.appendChild(labelled("to", el("input", { id: "max", type: "number", step: "any", size: "6" })));
    bar.appendChild(labelled("rows per page", select("size", [["10", "10"], ["25", "25"], ["50", "50"], ["100", "100"]], String(state.size))));
    [["sort", "key"], ["minus", "minus"], ["order", "order"], ["q", "q"], ["min", "min"], ["max", "max"], ["size", "size"]].forEach(function (pair) {
      var node = document.getElementById(pair[0]);
      node.addEventListener(node.tagName === "INPUT" ? "input" : "change", function () {
        state[pair[1]] = pair[1] === "size" ? Number(node.value) : node.value;
        state.page = 0;
        render();
      });
    });
    document.querySelectorAll(".prev").forEach(function (b) { b.addEventListener("click", function () { state.page = Math.max(0, state.page - 1); render(); }); });
    document.querySelectorAll(".next").forEach(function (b) { b.addEventListener("click", function () { state.page += 1; render(); }); });
  }

  controls();
  render();
})();
