// At phone width the tenant menu is one row that scrolls sideways: bring the current page's
// link into view (on a wide screen it is in view already, so nothing moves).
const current = document.querySelector(".sidenav-links a.active");
if (current) current.scrollIntoView({ block: "nearest", inline: "nearest" });
