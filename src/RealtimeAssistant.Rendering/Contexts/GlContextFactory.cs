namespace RealtimeAssistant.Rendering;

/// <summary>Picks a window when one is wanted and possible, and headless EGL otherwise.</summary>
public static class GlContextFactory
{
    /// <param name="fallbackReason">
    /// Set when a window was wanted but could not be opened: one line saying why (e.g. "no display:
    /// DISPLAY is not set ..."). The caller decides how to tell the user about the fallback.
    /// </param>
    public static IGlContext Create(bool preferWindow, int width, int height, out string? fallbackReason, string title = "RealtimeAssistant")
    {
        fallbackReason = null;
        if (preferWindow)
        {
            try
            {
                return new GlfwWindowContext(width, height, title);
            }
            catch (UserError e)
            {
                fallbackReason = e.Message;
            }
        }
        return new EglHeadlessContext(width, height);
    }
}
