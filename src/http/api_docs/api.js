// Renders /api/openapi.json as a list of operations by tag (src/http/api_docs.rs).
// Text goes in through textContent only: nothing from the document is parsed as HTML.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

// A schema, with its $refs resolved one level deep for reading.
function schemaText(doc, schema) {
  const resolve = (s) => {
    if (s && s.$ref) {
      const name = s.$ref.split("/").pop();
      return { [name]: doc.components.schemas[name] };
    }
    return s;
  };
  return JSON.stringify(resolve(schema), null, 2);
}

function renderOperation(doc, path, method, op) {
  const head = el("summary", {},
    el("span", { class: `method ${method}` }, method.toUpperCase()), " ",
    el("code", {}, path), " ", op.summary || "");
  if (op.security && op.security.some((r) => Object.keys(r).length > 0)) {
    const optional = op.security.some((r) => Object.keys(r).length === 0);
    head.append(" ", el("span", { class: "lock" }, optional ? "(token optional)" : "(bearer token)"));
  }
  const body = el("div", {});
  if (op.description) body.append(el("p", {}, op.description));
  body.append(el("p", {}, "operationId: ", el("code", {}, op.operationId || "")));
  if (op.parameters && op.parameters.length) {
    const table = el("table", {}, el("tr", {}, el("th", {}, "parameter"), el("th", {}, "in"), el("th", {}, "schema"), el("th", {}, "")));
    for (const p of op.parameters) {
      table.append(el("tr", {}, el("td", {}, el("code", {}, p.name + (p.required ? " *" : ""))),
        el("td", {}, p.in), el("td", {}, el("code", {}, JSON.stringify(p.schema))), el("td", {}, p.description || "")));
    }
    body.append(table);
  }
  if (op.requestBody) {
    for (const [type, media] of Object.entries(op.requestBody.content || {})) {
      body.append(el("p", {}, "Body ", el("code", {}, type)), el("pre", {}, schemaText(doc, media.schema)));
    }
  }
  const answers = el("table", {}, el("tr", {}, el("th", {}, "status"), el("th", {}, "meaning"), el("th", {}, "body")));
  for (const [status, r] of Object.entries(op.responses || {})) {
    const media = Object.entries(r.content || {})[0];
    const shape = media && media[1].schema ? (media[1].schema.$ref || "").split("/").pop() || media[0] : "";
    answers.append(el("tr", {}, el("td", {}, el("code", {}, status)), el("td", {}, r.description || ""), el("td", {}, el("code", {}, shape))));
  }
  body.append(answers);
  return el("details", {}, head, body);
}

async function main() {
  const main = document.getElementById("operations");
  let doc;
  try {
    const res = await fetch("/api/openapi.json");
    doc = await res.json();
  } catch (e) {
    main.textContent = `Could not read /api/openapi.json: ${e}`;
    return;
  }
  document.getElementById("title").textContent = `${doc.info.title} ${doc.info.version} (OpenAPI ${doc.openapi})`;
  document.getElementById("description").textContent = doc.info.description || "";
  const byTag = new Map();
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const method of ["get", "post", "patch", "put", "delete"]) {
      if (!item[method]) continue;
      const tag = (item[method].tags || ["other"])[0];
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(renderOperation(doc, path, method, item[method]));
    }
  }
  main.textContent = "";
  for (const tag of doc.tags || []) {
    if (!byTag.has(tag.name)) continue;
    main.append(el("h2", {}, tag.name), el("p", {}, tag.description || ""), ...byTag.get(tag.name));
    byTag.delete(tag.name);
  }
  for (const [tag, ops] of byTag) main.append(el("h2", {}, tag), ...ops);
  const schemes = (doc.components && doc.components.securitySchemes) || {};
  main.append(el("h2", {}, "Schemas"), el("pre", {}, JSON.stringify({ securitySchemes: schemes, schemas: doc.components.schemas }, null, 2)));
}

main();
