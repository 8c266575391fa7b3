using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Logging;

namespace RealtimeAssistant.Tests.Server;

/// <summary>A small web server on loopback at a free port, for what a test needs beside `ra` (a Hub, an image host, a web app's page).</summary>
internal static class LoopbackSite
{
    /// <summary>Starts Kestrel on 127.0.0.1 with the endpoints <paramref name="map"/> adds; the running app (its address is Urls.First()).</summary>
    public static async Task<WebApplication> Start(Action<WebApplication> map)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var app = builder.Build();
        map(app);
        await app.StartAsync();
        return app;
    }
}
