// The old frontends' socket service, as they wrote it: one socket for the whole page, made on
// first use with `auth: { token }`, and one small function per event.

let socket = null;

/** The page's one socket (created on first call). */
export function getSocket(apiUrl, token, options = {}) {
  if (!socket) {
    // `io` is the browser bundle's global (socket.io.min.js).
    socket = window.io(apiUrl, { auth: { token }, ...options });
  }
  return socket;
}

export const sendMessage = (chatId, message, clientMessageId) =>
  socket.timeout(8000).emitWithAck('message:send', { chatId, message, clientMessageId });
export const startTyping = (chatId) => socket.emit('user:typing:start', { chatId });
export const stopTyping = (chatId) => socket.emit('user:typing:stop', { chatId });
export const markRead = (chatId, messageId) => socket.emit('message:read', { chatId, messageId });
export const syncChat = (chatId, afterSeq) => socket.timeout(8000).emitWithAck('chat:sync', { chatId, afterSeq });
export const joinUserRoom = (userId) => socket.emit('joinUserRoom', userId);
export const sendReportMessage = (data) => socket.emit('sendReportMessage', data);
export const onReportMessageSent = (cb) => socket.on('reportMessageSent', cb);
export const onReceiveReportMessage = (cb) => socket.on('receiveReportMessage', cb);
export const onNewMessage = (cb) => socket.on('message:new', cb);
export const onTyping = (cb) => socket.on('user:typing', cb);
export const onRead = (cb) => socket.on('message:read', cb);
