// Starts Swagger UI (/docs) or ReDoc (/redoc) on the server's OpenAPI document: a file, not an
// inline script, so that the pages keep a Content-Security-Policy without 'unsafe-inline' scripts.
(function () {
  var swagger = document.getElementById("swagger-ui");
  if (swagger && window.SwaggerUIBundle) {
    window.ui = window.SwaggerUIBundle({
      url: swagger.dataset.openapi, dom_id: "#swagger-ui", deepLinking: true,
      presets: [window.SwaggerUIBundle.presets.apis, window.SwaggerUIBundle.SwaggerUIStandalonePreset].filter(Boolean),
      layout: "BaseLayout", persistAuthorization: false
    });
  }
  var redoc = document.getElementById("redoc");
  if (redoc && window.Redoc) {
    window.Redoc.init(redoc.dataset.openapi, {}, redoc);
  }
})();
