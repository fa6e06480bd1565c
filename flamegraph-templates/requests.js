// Makes each row of the request list open its request, not only its links.
document.querySelectorAll("tr[data-href]").forEach(function (row) {
  row.addEventListener("click", function (event) {
    if (event.target.closest("a")) return;
    window.location.href = row.dataset.href;
  });
});
