"""The Lua scripts of the reply-queue protocol (`shared.reply_queue`), one per stage: each
runs atomically in Redis, in one round trip. Their keys and arguments are listed above each."""

# KEYS: rate bucket, budget, in flight, line, active, storing, the message's fence, its
#   sender, administrators' budgets, the session's spending, the session's turns.
# ARGV: now, bucket size, refill/s, budget (0: none), wants a reply (0/1), message id,
#   in-flight expiry, in-flight limit, policy, cancel-mark prefix, cancel ttl, user, sender ttl,
#   session cap (0: none), the message id its turn is counted by (a version's: its message's),
#   turns ttl.
# Returns {verdict (0 admitted), retry after, the budget spent (budget verdicts), interrupted
# message id, turn (admitted)}. A message admitted takes the session's next turn number, once
# per message id (a resend, or a new version of its reply, keeps its number). An
# administrator's budget for the user replaces ARGV[4]. Outside `parallel`
# sessions an admitted message no worker has taken yet (no fence) is noted as storing, at
# the time it was admitted; notes older than a reply's expiry are dropped. The first user to
# send a message id keeps it as its sender (a resend by someone else changes nothing).
ADMIT = """
local function turn()
  local taken = redis.call('HGET', KEYS[11], ARGV[15])
  if not taken then
    taken = redis.call('HINCRBY', KEYS[11], '#', 1)
    redis.call('HSET', KEYS[11], ARGV[15], taken)
  end
  redis.call('EXPIRE', KEYS[11], ARGV[16])
  return tonumber(taken)
end
local now = tonumber(ARGV[1])
local capacity, rate = tonumber(ARGV[2]), tonumber(ARGV[3])
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = math.min(capacity, (tonumber(bucket[1]) or capacity)
  + (now - (tonumber(bucket[2]) or now)) * rate)
local allowed = tokens >= 1
if allowed then tokens = tokens - 1 end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 1)
if not allowed then return {1, tostring((1 - tokens) / rate), 0, ''} end
if ARGV[5] ~= '1' then return {0, '0', 0, '', turn()} end
local budget = tonumber(redis.call('HGET', KEYS[9], ARGV[12]) or ARGV[4])
if budget > 0 and tonumber(redis.call('GET', KEYS[2]) or '0') >= budget then
  return {2, '0', budget, ''}
end
local cap = tonumber(ARGV[14])
if cap > 0 and tonumber(redis.call('GET', KEYS[10]) or '0') >= cap then
  return {5, '0', cap, ''}
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
if not redis.call('ZSCORE', KEYS[3], ARGV[6])
  and redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[8]) then return {3, '1', 0, ''} end
local policy = ARGV[9]
local expiry = tonumber(ARGV[7])
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', 2 * now - expiry)
if policy == 'reject' and (redis.call('EXISTS', KEYS[5]) == 1
  or redis.call('ZCARD', KEYS[4]) > 0 or redis.call('ZCARD', KEYS[6]) > 0) then
  return {4, '1', 0, ''}
end
local interrupted = ''
if policy == 'interrupt' then
  interrupted = redis.call('GET', KEYS[5]) or ''
  if interrupted ~= '' then
    redis.call('SET', ARGV[10] .. interrupted, 1, 'EX', ARGV[11])
  end
end
redis.call('ZADD', KEYS[3], expiry, ARGV[6])
redis.call('EXPIRE', KEYS[3], math.ceil(expiry - now) + 1)
redis.call('SET', KEYS[8], ARGV[12], 'NX', 'EX', ARGV[13])
if policy ~= 'parallel' and redis.call('EXISTS', KEYS[7]) == 0 then
  redis.call('ZADD', KEYS[6], 'NX', now, ARGV[6])
  redis.call('EXPIRE', KEYS[6], math.ceil(expiry - now) + 1)
end
return {0, '0', 0, interrupted, turn()}
"""
# KEYS: fence, in flight, storing. ARGV: message id, fence ttl. Give up on a message no worker
# began (no fence): it is marked answered, so a worker that takes it later only acks it, and
# it leaves the replies in flight and the storing notes. Returns 1, or 0 when a worker began it.
GIVE_UP = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], 'done', 'EX', ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""
# KEYS: the message's sender, its cancel mark. ARGV: user, may cancel any reply (0/1), mark
# ttl. Marks the reply cancelled if the user may: returns 1, else 0 (someone else's) or 2 (no
# sender known: no reply asked for, or one long over).
CANCEL = """
if ARGV[2] ~= '1' then
  local sender = redis.call('GET', KEYS[1])
  if not sender then return 2 end
  if sender ~= ARGV[1] then return 0 end
end
redis.call('SET', KEYS[2], 1, 'EX', ARGV[3])
return 1
"""
# KEYS: fence. Claim the reply for ARGV[1] unless a newer attempt has it (0) or it was
# answered (2). The fence holds the attempt, then `|` and the delivery that began it (BEGIN).
# With ARGV[3] > 0 and the claim ours, the worker answering the head of line beats for
# ARGV[3] ms (KEYS[2]).
CLAIM = """
local current = redis.call('GET', KEYS[1])
if current == 'done' then return 2 end
local held = tonumber(string.match(current or '0', '^%d+'))
if held > tonumber(ARGV[1]) then return 0 end
if held == tonumber(ARGV[1]) then redis.call('EXPIRE', KEYS[1], ARGV[2])
else redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) end
if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[2], 1, 'PX', ARGV[3]) end
return 1
"""
# KEYS: fence, cancel mark, line, active, storing. The claim for delivery ARGV[6] (as CLAIM,
# but a delivery numbered as the attempt another delivery began is one whose count the broker
# lost in a crash: it claims the next attempt instead); whether a cancel mark waits; with a
# place (ARGV[4] > 0): no longer storing, the line rejoined, its head, when the message was
# admitted ('0': unknown) and the first message still storing that was admitted before it
# (the blocker, ''); the active mark when the head is this message and none blocks.
# Returns {claim, marked, head, admitted at, blocker, the attempt claimed}.
BEGIN = """
local current = redis.call('GET', KEYS[1])
if current == 'done' then return {2, 0, 0, '0', '', 0} end
local attempt = tonumber(ARGV[1])
local held, by = string.match(current or '0', '^(%d+)|?(.*)$')
held = tonumber(held)
if held > attempt then return {0, 0, 0, '0', '', 0} end
if held == attempt and by ~= '' and by ~= ARGV[6] then attempt = held + 1 end
redis.call('SET', KEYS[1], attempt .. '|' .. ARGV[6], 'EX', ARGV[2])
local marked = redis.call('EXISTS', KEYS[2])
if tonumber(ARGV[4]) <= 0 then return {1, marked, 0, '0', '', attempt} end
local at = redis.call('ZSCORE', KEYS[5], ARGV[3])
local blocker = ''
if at then
  redis.call('ZREM', KEYS[5], ARGV[3])
  blocker = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', '(' .. at, 'LIMIT', 0, 1)[1] or ''
end
redis.call('ZADD', KEYS[3], 'NX', ARGV[4], ARGV[4])
redis.call('EXPIRE', KEYS[3], ARGV[5])
local head = tonumber(redis.call('ZRANGE', KEYS[3], 0, 0)[1])
if head == tonumber(ARGV[4]) and blocker == '' then
  redis.call('SET', KEYS[4], ARGV[3], 'EX', ARGV[5])
end
return {1, marked, head, at or '0', blocker, attempt}
"""
# KEYS: line, beat, active, storing. Rejoin the line (idempotent); its head, whether the
# worker answering the head beat lately, the first message storing admitted before ARGV[4]
# (if > 0); the active mark when the head is message ARGV[3] (if any) and none blocks.
LINE = """
redis.call('ZADD', KEYS[1], 'NX', ARGV[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
local head = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
local blocker = ''
if tonumber(ARGV[4]) > 0 then
  blocker = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', '(' .. ARGV[4], 'LIMIT', 0, 1)[1] or ''
end
if head == ARGV[1] and ARGV[3] ~= '' and blocker == '' then
  redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[2])
end
return {head, redis.call('EXISTS', KEYS[2]), blocker}
"""
# KEYS: line. Drop the head if it still is ARGV[1].
SKIP = """
if redis.call('ZRANGE', KEYS[1], 0, 0)[1] == ARGV[1] then redis.call('ZREM', KEYS[1], ARGV[1]) end
return 1
"""
# KEYS: fence, line, active, in flight, storing; optionally a list and a key it clears.
# ARGV: attempt, fence ttl, place, message id, answered; with the list, its length, its ttl and
# the items to append. Answered: mark it so unless a newer attempt took the reply (0: that
# attempt streams it again; its terminal event is the one kept), leave the line, the storing
# notes and the active mark, and append the items (only when this call marks it answered, so
# a repeated finish appends nothing). Answered or failed, the reply leaves the session's
# replies in flight.
FINISH = """
if ARGV[5] == '1' then
  local current = redis.call('GET', KEYS[1])
  if current and current ~= 'done'
    and tonumber(string.match(current, '^%d+')) > tonumber(ARGV[1]) then return 0 end
  if current ~= 'done' and #KEYS >= 7 then
    redis.call('RPUSH', KEYS[6], unpack(ARGV, 8))
    redis.call('LTRIM', KEYS[6], -tonumber(ARGV[6]), -1)
    redis.call('EXPIRE', KEYS[6], ARGV[7])
    redis.call('DEL', KEYS[7])
  end
  redis.call('SET', KEYS[1], 'done', 'EX', ARGV[2])
  redis.call('ZREM', KEYS[2], ARGV[3])
  redis.call('ZREM', KEYS[5], ARGV[4])
  if redis.call('GET', KEYS[3]) == ARGV[4] then redis.call('DEL', KEYS[3]) end
end
redis.call('ZREM', KEYS[4], ARGV[4])
return 1
"""
